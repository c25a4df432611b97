"""The optimizer part of a train step: our fused AdamW against optax + a skip select, same run.

    python benchmarks/optimizer_step.py                 # Qwen3-0.6B's parameters (~1 min, ~12 GiB)
    python benchmarks/optimizer_step.py --preset tiny

Every variant takes the same gradients and does what the train step does after the backward pass:
divide by the token count, global norm, clip, AdamW with decay masks, and skip the step when it is
not finite. "optax + skip" is the step before the fused optimizer (optax.chain(clip, adamw), then
`where(finite, new, old)` over parameters and moments, with finiteness checked on the update's
norm); "optax, no skip" drops the skip (not safe, a bound); "fused" is `train.optim.AdamW`. All
jitted with the state donated, as the train step. Prints a table, writes
benchmarks/results/optimizer_step.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import platform
import time


def trainable_llm(preset: str):
    """The preset's LLM parameters (real shapes and names), filled with small values."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from andesvl_jax.config import get_preset
    from andesvl_jax.models.qwen3 import Qwen3

    cfg = get_preset(preset, scan_layers=False).text
    abstract = nnx.eval_shape(lambda: nnx.state(Qwen3(cfg, rngs=nnx.Rngs(0), scan=False)))
    return {"llm": jax.tree.map(lambda a: jnp.full(a.shape, 0.01, a.dtype), abstract)}


def variants(optimizer):
    import jax
    import jax.numpy as jnp
    import optax

    from andesvl_jax.train.optim import decay_mask

    reference = optax.chain(
        optax.clip_by_global_norm(optimizer.clip_norm),
        optax.adamw(optimizer.schedule, weight_decay=optimizer.weight_decay, mask=decay_mask),
    )

    def optax_step(skip: bool):
        def step(params, opt_state, grads, tokens):
            grads = jax.tree.map(lambda g: g / tokens, grads)
            grad_norm = optax.tree.norm(grads)
            updates, new_state = reference.update(grads, opt_state, params)
            new = optax.apply_updates(params, updates)
            if not skip:
                return new, new_state, grad_norm
            finite = jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(updates))
            keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(finite, x, y), a, b)  # noqa: E731
            return keep(new, params), keep(new_state, opt_state), grad_norm

        return reference.init, step

    def fused_step(params, opt_state, grads, tokens):
        grads = jax.tree.map(lambda g: g / tokens, grads)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(grad_norm) & jnp.isfinite(optimizer.learning_rate(opt_state))
        new, new_state = optimizer.update(grads, opt_state, params, grad_norm, finite)
        return new, new_state, grad_norm

    return {
        "optax + skip (before)": optax_step(True),
        "optax, no skip": optax_step(False),
        "fused AdamW (ours)": (optimizer.init, fused_step),
    }


def time_variant(init, step, preset: str, repeats: int) -> float:
    import jax
    import jax.numpy as jnp

    params = trainable_llm(preset)
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 1e-3, p.dtype), params)
    state = init(params)
    fn = jax.jit(step, donate_argnums=(0, 1))
    tokens = jnp.float32(3.0)
    params, state, _ = fn(params, state, grads, tokens)
    jax.block_until_ready(params)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        params, state, _ = fn(params, state, grads, tokens)
        jax.block_until_ready((params, state))
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="0.6b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "optimizer_step.json")
    )
    args = parser.parse_args()

    import jax
    from train_step import bench_optimizer

    optimizer = bench_optimizer(steps=args.repeats + 1)
    n = sum(x.size for x in jax.tree.leaves(jax.eval_shape(lambda: trainable_llm(args.preset))))
    rows = []
    for name, (init, step) in variants(optimizer).items():
        seconds = time_variant(init, step, args.preset, args.repeats)
        gc.collect()
        rows.append({"variant": name, "seconds": seconds, "params": n})
    base = rows[0]["seconds"]
    print(f"{args.preset}: {n / 1e6:.0f} M parameters (fp32), best of {args.repeats}")
    print(f"{'variant':24s} {'s/step':>8s} {'vs before':>10s} {'GB/s of p,g,m,v':>16s}")
    for r in rows:
        r["speedup_vs_before"] = base / r["seconds"]
        # read params, grads, both moments; write params and both moments
        r["effective_gb_per_s"] = 7 * 4 * n / r["seconds"] / 1e9
        print(
            f"{r['variant']:24s} {r['seconds']:8.2f} {r['speedup_vs_before']:9.2f}x "
            f"{r['effective_gb_per_s']:16.1f}"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"machine": platform.machine(), "args": vars(args), "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
