"""QAT step cost vs the float SFT step, same model, same batch, same run (issue 12: <= 1.5x).

    python benchmarks/qat_step.py                       # tiny and Qwen3-0.6B shapes, 512 tokens
    python benchmarks/qat_step.py --sizes tiny --repeats 3

For each size, the training loop's real step (`make_train_step` + `jit_train_step`: forward,
backward, clipping, AdamW, guard) with the LLM trainable, on one text batch, timed for
  sft        the float model, next-token loss;
  qat        the model after `quantize_model(rules)` (W4A16 g32 by default), next-token loss;
  qat+kd     the same plus distillation from the frozen float teacher (KL on the logits, weight 1).
Each QAT variant is timed against its own SFT step, the pair interleaved (S Q S Q ...) `--repeats`
times `--steps` each, one pair in memory at a time; the table gives median step times and the
variant/SFT ratio as median [min-max] over the repeats. `--exact SIZES`
uses QuantLinear's bit-exact grouped product for those sizes; the default is the dense dequantized
matmul (`exact=False`), what both the tiny and the andesvl qat configs train with.
Writes benchmarks/results/qat_step.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import time

import numpy as np

SIZES = {"tiny": "tiny", "0.6b": "0.6b"}


def build_step(
    preset: str, batch: int, seq: int, variant: str, rules: str, exact: bool, layers=None
):
    """(jitted step, state, batch) of one variant, compiled and run once."""
    import jax
    from flax import nnx
    from train_step import bench_optimizer

    from andesvl_jax.compress.qlinear import quantize_model
    from andesvl_jax.config import get_preset
    from andesvl_jax.data.batch import TrainBatch
    from andesvl_jax.models.andesvl import AndesVL
    from andesvl_jax.train.objectives import next_token_objective, qat_objective
    from andesvl_jax.train.stages import Stage, is_trainable
    from andesvl_jax.train.trainer import TrainState, jit_train_step, make_train_step

    text = {"num_layers": layers} if layers else {}
    cfg = dataclasses.replace(
        get_preset(preset, scan_layers=preset != "tiny", text=text),
        vision=get_preset("tiny").vision,
    )
    model = AndesVL(cfg, rngs=nnx.Rngs(0))
    if variant != "sft":
        quantize_model(model, rules, exact=exact)  # weight-only / A16 steps need no calibration
    objective = qat_objective(1.0) if variant == "qat+kd" else next_token_objective()
    stage = Stage("llm_only", ("llm",), "sft", "benchmark: the LLM trains")
    graphdef, params, frozen = nnx.split(model, is_trainable(stage), ...)
    opt = bench_optimizer(10)
    zero = jax.numpy.zeros((), jax.numpy.int32)
    extra = objective.init_extra(params)
    state = TrainState(
        zero, params, frozen, opt.init(params), jax.random.PRNGKey(0), zero, zero, extra
    )
    state = jax.tree.map(lambda x: jax.device_put(np.array(x)), state)  # donated: own buffers
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.text.vocab_size, (batch, seq)).astype(np.int32)
    pos = np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)).copy()
    mask = np.ones((batch, seq), np.float32)
    mask[:, -1] = 0
    tb = TrainBatch(ids, np.ones_like(ids), pos, np.roll(ids, -1, axis=1), mask, None)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    step = jit_train_step(
        make_train_step(graphdef, opt, objective=objective),
        jax.tree.map(lambda _: device, state),
        jax.tree.map(lambda _: device, tb),
    )
    state, m = step(state, tb)
    m["loss"].block_until_ready()
    return step, state, tb


def timed_steps(runner, steps: int) -> float:
    step, state, tb = runner
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, m = step(state, tb)
        m["loss"].block_until_ready()
        times.append(time.perf_counter() - start)
    runner[1] = state
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,0.6b")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rules", default="w4a16_g32")
    parser.add_argument("--layers", type=int, default=None, help="LLM layers (fewer fit RAM)")
    parser.add_argument(
        "--sequential", action="store_true", help="one train state in memory at a time (0.6B)"
    )
    parser.add_argument(
        "--exact", default="", help="sizes run with the bit-exact product (configs: none)"
    )
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "qat_step.json")
    )
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        exact = size in args.exact.split(",")
        # one (sft, variant) pair alive at a time: three 0.6B train states do not fit 24 GiB;
        # --sequential: one state at a time (a 0.6B pair does not fit either), sft timed before
        # and after the variant and the variant's repeats divided by the sft median
        for variant in ("qat", "qat+kd"):
            times = {"sft": [], variant: []}
            if args.sequential:
                for v in ("sft", variant, "sft"):
                    runner = list(
                        build_step(
                            SIZES[size], args.batch, args.seq, v, args.rules, exact, args.layers
                        )
                    )
                    times[v] += [timed_steps(runner, args.steps) for _ in range(args.repeats)]
                    del runner
                times["sft"] = [float(np.median(times["sft"]))] * args.repeats
            else:
                runners = {
                    v: list(
                        build_step(
                            SIZES[size], args.batch, args.seq, v, args.rules, exact, args.layers
                        )
                    )
                    for v in times
                }
                for _ in range(args.repeats):
                    for v in runners:
                        times[v].append(timed_steps(runners[v], args.steps))
                del runners
            ratio = np.asarray(times[variant]) / np.asarray(times["sft"])
            rows.append(
                {
                    "size": size,
                    "variant": variant,
                    "rules": args.rules,
                    "exact": exact,
                    "tokens_per_step": args.batch * args.seq,
                    "sft_step_s_median": float(np.median(times["sft"])),
                    "step_s_median": float(np.median(times[variant])),
                    "sft_step_s": times["sft"],
                    "step_s": times[variant],
                    "ratio_median": float(np.median(ratio)),
                    "ratio_min": float(ratio.min()),
                    "ratio_max": float(ratio.max()),
                }
            )
    print(
        f"machine: {platform.processor() or platform.machine()}, {args.repeats} repeats "
        f"({'sequential' if args.sequential else 'interleaved'}), seq {args.seq}, "
        f"LLM layers {args.layers or 'all'}"
    )
    print(
        f"{'size':6s} {'variant':8s} {'exact':>6s} {'sft s':>8s} {'step s':>8s} {'vs sft: median [min-max]':>26s}"
    )
    for r in rows:
        print(
            f"{r['size']:6s} {r['variant']:8s} {str(r['exact']):>6s} {r['sft_step_s_median']:8.3f} "
            f"{r['step_s_median']:8.3f} "
            f"{r['ratio_median']:10.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
        )
    pathlib.Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
