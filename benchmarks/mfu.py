"""MFU of the real train step: an experiments/ config, random weights and a full random batch.

    python benchmarks/mfu.py --config experiments/andesvl.py:size=1b,stage=joint --rows 1 \
        --peak-tflops 989 --steps 5          # one H100/H200: AndesVL-1B joint at 8192 tokens
    python benchmarks/mfu.py --config experiments/tiny.py:stage=joint --steps 3   # CPU smoke run

The step is the training loop's (`train.trainer.make_train_step` under `jit_train_step`, the config's
remat, dtype and attention); the batch fills every token and patch slot (packing at 100 %), so the
model FLOPs per step (`train_flops`, 6·N·tokens + attention, PaLM appendix B) are those of a full
step. MFU = model FLOPs / (median step time × peak). Prints a table; writes
benchmarks/results/mfu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a plain checkout works too (andesvl_jax finds kernels/ itself)


def random_batch(abstract, vocab: int, seed: int = 0):
    """Concrete arrays for an abstract batch: one sample per row, every slot used."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)

    def fill(path, a):
        name = jax.tree_util.keystr(path)
        width = a.shape[1] if a.ndim > 1 else 1
        if "segment_ids" in name:
            value = np.ones(a.shape, a.dtype)
        elif "positions" in name:
            value = np.broadcast_to(np.arange(width, dtype=a.dtype), a.shape).copy()
        elif "rows" in name or "cols" in name:  # a square patch grid per row
            side = int(np.sqrt(width))
            idx = np.arange(width) % (side * side)
            value = np.broadcast_to((idx // side if "rows" in name else idx % side), a.shape)
        elif "grid" in name:
            value = np.full(a.shape, int(np.sqrt(width)))
        elif a.dtype == np.int32:
            value = rng.integers(0, vocab, a.shape)
        elif "loss_mask" in name:
            value = np.ones(a.shape)
        else:
            value = rng.standard_normal(a.shape) * 0.1
        return jax.device_put(np.asarray(value, a.dtype), a.sharding)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/tiny.py:stage=joint")
    parser.add_argument("--rows", type=int, default=0, help="global batch rows (0: the config's)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    parser.add_argument(
        "--peak-tflops", type=float, default=0.0, help="device peak; 0: report none"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mfu.json"))
    args, overrides = parser.parse_known_args()

    import jax

    from andesvl_jax.configs import model_config
    from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
    from andesvl_jax.train.compile_check import abstract_batch
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import initial_state
    from andesvl_jax.train.objectives import OBJECTIVES
    from andesvl_jax.train.stages import get_stage
    from andesvl_jax.train.step_shape import step_shape
    from andesvl_jax.train.telemetry import train_flops
    from andesvl_jax.train.trainer import jit_train_step, make_train_step

    config = load_config(args.config, overrides)
    with config.unlocked():
        config.mesh.update({"data": 1, "fsdp": -1, "tensor": 1})
        config.init.from_pretrained = config.init.from_stage_workdir = None
        if args.rows:
            config.data.batch_size = args.rows
    stage, model_cfg = get_stage(config.stage), model_config(config)
    mesh = make_mesh(dict(config.mesh))
    rules = tuple(tuple(r) for r in config.rules) if config.rules else DEFAULT_RULES
    objective = OBJECTIVES[stage.objective](config)
    graphdef, state, optimizer = initial_state(config, model_cfg, mesh, rules, stage, objective)
    shape = step_shape(config, model_cfg, stage, mesh)
    rows, tokens, patches = shape
    abstract = abstract_batch(model_cfg, shape, stage.objective, mesh)
    batch = random_batch(abstract, model_cfg.text.vocab_size)
    step = jit_train_step(
        make_train_step(graphdef, optimizer, objective=objective, mesh=mesh, rules=rules),
        jax.tree.map(lambda x: x.sharding, state),
        jax.tree.map(lambda x: x.sharding, batch),
    )
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    flops = train_flops(model_cfg, rows * tokens, rows * patches, tokens, patches)
    median = statistics.median(times)
    devices = jax.device_count()
    result = {
        "config": args.config,
        "device": jax.devices()[0].device_kind,
        "devices": devices,
        "rows": rows,
        "tokens_per_row": tokens,
        "patches_per_row": patches,
        "dtype": model_cfg.dtype,
        "remat": model_cfg.remat,
        "attention_impl": model_cfg.attention_impl,
        "first_step_s": round(compile_s, 2),
        "step_s_median": median,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "model_tflops_per_step": flops / 1e12,
        "achieved_tflops_per_device": flops / median / devices / 1e12,
        "mfu": flops / median / devices / (args.peak_tflops * 1e12) if args.peak_tflops else None,
        "loss": float(metrics["loss"]),
        "machine": platform.node(),
    }
    print(
        f"{'config':40s} {'device':>20s} {'step s (med, min-max)':>24s} {'TFLOP/s/dev':>12s} {'MFU':>6s}"
    )
    mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "-"
    spread = f"{median:.3f} ({min(times):.3f}-{max(times):.3f})"
    print(
        f"{args.config:40s} {result['device']:>20s} {spread:>24s} "
        f"{result['achieved_tflops_per_device']:12.1f} {mfu:>6s}"
    )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
