"""Train-step throughput: our jitted Qwen3 step vs a PyTorch/transformers step of the same config, same run.

    python benchmarks/train_step.py                 # tiny and Qwen3-0.6B, 512 tokens (CPU: ~10 min)
    python benchmarks/train_step.py --sizes tiny    # seconds

For each size: tokens/s and step time of (a) our `make_train_step` (forward, backward, clipping,
AdamW) with the Qwen3 decoder training, its layers stacked under `lax.scan` and as separate modules
(`--layouts`), (b) `transformers.Qwen3ForCausalLM` + `torch.optim.AdamW`, both fp32 with identical
shapes, and the fraction of the machine's measured fp32 matmul FLOP/s each reaches
(6 * params * tokens + attention per step). Prints a table and writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import platform
import time

import numpy as np

from andesvl_jax.convert.torch_reference import hf_qwen3_config

SIZES = {"tiny": "tiny", "0.6b": "0.6b"}


def bench_optimizer(steps: int):
    """The training loop's optimizer (`train.optim.make_optimizer`): constant LR 1e-4, decay 0.05."""
    from andesvl_jax.configs import base_config
    from andesvl_jax.train.optim import make_optimizer

    cfg = base_config().optim
    cfg.update(lr=1e-4, schedule="constant", warmup_steps=0, weight_decay=0.05)
    return make_optimizer(cfg, steps)


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul FLOP/s of this machine (jax, the best of `repeats`)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(text_cfg, tokens: int, seq: int) -> float:
    t = text_cfg
    layer = (
        t.hidden_size * (2 * t.num_heads * t.head_dim + 2 * t.num_kv_heads * t.head_dim)
        + 3 * t.hidden_size * t.intermediate_size
    )
    params = t.num_layers * layer + t.hidden_size * t.vocab_size
    return 6.0 * params * tokens + 12 * t.num_layers * t.num_heads * t.head_dim * seq * tokens


def jax_step(preset: str, batch: int, seq: int, steps: int, scan: bool) -> float:
    """Seconds per step of our real train step (`make_train_step`: accumulation scan, clipping,
    AdamW, NaN guard, donation) on the preset's AndesVL with the tiny vision tower; the batch is
    text-only and only the LLM trains (vision + projector frozen: no gradient, no optimizer state).
    scan: stacked layers under `lax.scan` (the large-model default) or separate layer modules."""
    import dataclasses

    import jax
    from flax import nnx

    from andesvl_jax.config import get_preset
    from andesvl_jax.data.batch import TrainBatch
    from andesvl_jax.models.andesvl import AndesVL
    from andesvl_jax.train.stages import Stage, is_trainable
    from andesvl_jax.train.trainer import TrainState, jit_train_step, make_train_step

    cfg = dataclasses.replace(
        get_preset(preset, scan_layers=scan), vision=get_preset("tiny").vision
    )
    text_cfg = cfg.text
    stage = Stage("llm_only", ("llm",), "sft", "benchmark: the LLM trains")
    graphdef, params, frozen = nnx.split(AndesVL(cfg, rngs=nnx.Rngs(0)), is_trainable(stage), ...)
    opt = bench_optimizer(steps)
    zero = jax.numpy.zeros((), jax.numpy.int32)
    state = TrainState(
        zero, params, frozen, opt.init(params), jax.random.PRNGKey(0), zero, zero, {}
    )
    # The state is donated: every leaf needs its own buffer.
    state = jax.tree.map(lambda x: jax.device_put(np.array(x)), state)
    ids = np.random.default_rng(0).integers(0, text_cfg.vocab_size, (batch, seq)).astype(np.int32)
    pos = np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)).copy()
    targets = np.roll(ids, -1, axis=1)
    mask = np.ones((batch, seq), np.float32)
    mask[:, -1] = 0
    tb = TrainBatch(ids, np.ones_like(ids), pos, targets, mask, None)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    step = jit_train_step(  # exactly as the training loop jits it
        make_train_step(graphdef, opt),
        jax.tree.map(lambda _: device, state),
        jax.tree.map(lambda _: device, tb),
    )
    state, m = step(state, tb)
    m["loss"].block_until_ready()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, m = step(state, tb)
        m["loss"].block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def torch_step(text_cfg, batch: int, seq: int, steps: int) -> float:
    """Seconds per step of transformers' Qwen3ForCausalLM + torch AdamW (median of `steps`)."""
    import torch
    import transformers

    t = text_cfg
    cfg = hf_qwen3_config(text_cfg, seq)
    model = transformers.Qwen3ForCausalLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, t.vocab_size, (batch, seq)))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()

    step()
    times = [_timed(step) for _ in range(steps)]
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,0.6b")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--layouts", default="scan,layers", help="our step with stacked+scan and/or separate layers"
    )
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "train_step.json")
    )
    args = parser.parse_args()

    import torch

    from andesvl_jax.config import get_preset

    torch.set_num_threads(max(1, torch.get_num_threads()))
    peak = matmul_peak_flops()
    rows = []
    for size in args.sizes.split(","):
        text = get_preset(SIZES[size]).text
        tokens = args.batch * args.seq
        flops = step_flops(text, tokens, args.seq)
        ours = {
            layout: jax_step(SIZES[size], args.batch, args.seq, args.steps, layout == "scan")
            for layout in args.layouts.split(",")
        }
        gc.collect()
        theirs = torch_step(text, args.batch, args.seq, args.steps)
        gc.collect()
        for layout, seconds in ours.items():
            rows.append(
                {
                    "size": size,
                    "layout": layout,
                    "tokens_per_step": tokens,
                    "jax_step_s": seconds,
                    "torch_step_s": theirs,
                    "jax_tokens_per_s": tokens / seconds,
                    "torch_tokens_per_s": tokens / theirs,
                    "speedup_vs_torch": theirs / seconds,
                    "jax_fraction_of_peak": flops / seconds / peak,
                    "torch_fraction_of_peak": flops / theirs / peak,
                }
            )
    print(
        f"machine: {platform.processor() or platform.machine()}, measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        f"{'size':6s} {'layers':7s} {'tok/step':>8s} {'jax s':>8s} {'torch s':>8s} {'jax tok/s':>10s} "
        f"{'torch tok/s':>11s} {'speedup':>8s} {'jax %peak':>9s} {'torch %peak':>11s}"
    )
    for r in rows:
        print(
            f"{r['size']:6s} {r['layout']:7s} {r['tokens_per_step']:8d} {r['jax_step_s']:8.3f} "
            f"{r['torch_step_s']:8.3f} {r['jax_tokens_per_s']:10.0f} {r['torch_tokens_per_s']:11.0f} "
            f"{r['speedup_vs_torch']:8.2f} {r['jax_fraction_of_peak']:9.1%} {r['torch_fraction_of_peak']:11.1%}"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"peak_fp32_matmul_flops": peak, "rows": rows, "args": vars(args)}, indent=2)
    )


if __name__ == "__main__":
    main()
