"""Every registered attention impl, compiled on this backend, against the XLA reference.

    python benchmarks/attention_impls_check.py [--seq 2048] [--out benchmarks/results/attention_impls.json]

Packed segments (three samples and padding per row), causal, GQA, bf16 inputs: forward values and
gradients (dq, dk, dv) relative to `xla_attention` in float32, and the median time of forward +
backward. benchmarks/device_check.sh runs it on a lent GPU; an impl that passes there may be added
to `kernels.dispatch.VALIDATED` for that backend. An impl that raises is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def inputs(seq: int, heads: int = 16, kv: int = 8, dim: int = 128, batch: int = 2):
    import jax
    import jax.numpy as jnp
    import numpy as np

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    q = jax.random.normal(keys[0], (batch, seq, heads, dim), jnp.bfloat16)
    k = jax.random.normal(keys[1], (batch, seq, kv, dim), jnp.bfloat16)
    v = jax.random.normal(keys[2], (batch, seq, kv, dim), jnp.bfloat16)
    bounds = [0, seq // 3, seq // 2, seq - seq // 8]  # three samples, then padding
    seg = np.zeros((batch, seq), np.int32)
    pos = np.zeros((batch, seq), np.int32)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        seg[:, a:b] = i + 1
        pos[:, a:b] = np.arange(b - a)
    kw = dict(
        q_segment_ids=jnp.asarray(seg),
        kv_segment_ids=jnp.asarray(seg),
        q_positions=jnp.asarray(pos),
        kv_positions=jnp.asarray(pos),
        causal=True,
    )
    return (q, k, v), kw


def fwd_bwd(fn, kw):
    import jax
    import jax.numpy as jnp

    def loss(q, k, v):
        out = fn(q, k, v, **kw).astype(jnp.float32)
        return jnp.sum(out * jnp.cos(out)), out

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def rel_err(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "attention_impls.json")
    )
    args = parser.parse_args()

    import jax
    from andesvl_jax.kernels import KERNELS

    (q, k, v), kw = inputs(args.seq)
    ref_fn = fwd_bwd(KERNELS["attention"]["xla"], kw)
    f32 = [x.astype("float32") for x in (q, k, v)]
    (_, ref_out), ref_grads = ref_fn(*f32)
    rows = []
    for name, fn in sorted(KERNELS["attention"].items()):
        row = {"impl": name, "backend": jax.default_backend(), "seq": args.seq}
        try:
            run = fwd_bwd(fn, kw)
            (_, out), grads = run(q, k, v)
            jax.block_until_ready(grads)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(run(q, k, v))
                times.append(time.perf_counter() - start)
            row.update(
                ok=True,
                out_rel_err=rel_err(out, ref_out),
                grad_rel_err=max(rel_err(g, r) for g, r in zip(grads, ref_grads, strict=True)),
                ms_median=1e3 * statistics.median(times),
                ms_min=1e3 * min(times),
                ms_max=1e3 * max(times),
            )
            row["passes_bf16"] = row["out_rel_err"] < 3e-2 and row["grad_rel_err"] < 5e-2
        except Exception as e:  # noqa: BLE001  (a failing impl is a finding, not a crash)
            row.update(ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
        rows.append(row)
        print(json.dumps(row))
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
