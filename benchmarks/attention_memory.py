"""Peak temporary memory and time of attention forward+backward: XLA reference vs blockwise.

    python benchmarks/attention_memory.py [--seqs 2048,4096,8192,16384,32768] [--repeats 3]
        [--ram-budget-gb 4] [--out benchmarks/results/attention_memory.json]

The tiny model's attention widths (4 query heads, 2 KV heads, head_dim 16; andesvl_jax/config.py
TINY_TEXT), one row, float32, causal over one segment (the worst case: no tile is skipped by
segment). For each length, `jax.value_and_grad` of the attention is compiled and XLA's
memory_analysis gives its temporary bytes (everything but inputs and outputs: logits, residuals,
gradients in flight); compiling allocates nothing, so the reference is measured at every length.
It is *run* only where its temporaries fit --ram-budget-gb (the box is shared); the table says
"skipped" otherwise. Prints a table and, per impl, least-squares fits of the temporary bytes
(bytes per token, bytes per token^2, growth per doubling) and writes JSON.
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


def problem(seq: int, heads: int, kv: int, dim: int):
    """(q, k, v) zeros and the causal one-segment masking description for one row of `seq`."""
    import jax.numpy as jnp

    q = jnp.zeros((1, seq, heads, dim), jnp.float32)
    k = jnp.zeros((1, seq, kv, dim), jnp.float32)
    seg = jnp.ones((1, seq), jnp.int32)
    pos = jnp.arange(seq, dtype=jnp.int32)[None]
    kw = dict(q_segment_ids=seg, kv_segment_ids=seg, q_positions=pos, kv_positions=pos, causal=True)
    return (q, k, k), kw


def measure(impl: str, seq: int, args, repeats: int, budget_bytes: float) -> dict:
    import jax
    import jax.numpy as jnp
    from andesvl_jax.kernels import KERNELS

    (q, k, v), kw = problem(seq, args.heads, args.kv_heads, args.head_dim)
    fn = KERNELS["attention"][impl]
    step = jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v, **kw) ** 2), (0, 1, 2)))
    start = time.perf_counter()
    compiled = step.lower(q, k, v).compile()
    row = {"impl": impl, "seq": seq, "compile_s": time.perf_counter() - start}
    row["temp_bytes"] = int(compiled.memory_analysis().temp_size_in_bytes)
    if row["temp_bytes"] > budget_bytes:
        row["skipped"] = f"temp {row['temp_bytes'] / 2**30:.1f} GiB > budget"
        return row
    jax.block_until_ready(compiled(q, k, v))  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(q, k, v))
        times.append(time.perf_counter() - start)
    row.update(s_median=statistics.median(times), s_min=min(times), s_max=max(times))
    return row


def fits(rows: list[dict], impl: str) -> dict:
    """Least-squares fits of `impl`'s temporary bytes over the measured lengths: the linear slope
    (bytes per token), the quadratic coefficient (bytes per token^2) and the growth per doubling."""
    import numpy as np

    pts = sorted((r["seq"], r["temp_bytes"]) for r in rows if r["impl"] == impl)
    x, y = np.asarray(pts, np.float64).T
    return {
        "bytes_per_token": float(np.polyfit(x, y, 1)[0]),
        "bytes_per_token_squared": float(np.polyfit(x, y, 2)[0]),
        "growth_per_doubling": float(np.exp(np.mean(np.diff(np.log(y)) / np.diff(np.log2(x))))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", default="2048,4096,8192,16384,32768")
    parser.add_argument("--impls", default="xla,blockwise")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ram-budget-gb", type=float, default=4.0)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "attention_memory.json")
    )
    args = parser.parse_args()

    import jax

    seqs = [int(s) for s in args.seqs.split(",")]
    rows = []
    print(f"{'impl':<10} {'seq':>6} {'temp MiB':>10} {'MiB/1k tok':>11} {'fwd+bwd s':>22}")
    for seq in seqs:
        for impl in args.impls.split(","):
            row = measure(impl, seq, args, args.repeats, args.ram_budget_gb * 2**30)
            rows.append(row)
            timing = row.get("skipped") or (
                f"{row['s_median']:.3f} [{row['s_min']:.3f}, {row['s_max']:.3f}]"
            )
            mib = row["temp_bytes"] / 2**20
            print(f"{impl:<10} {seq:>6} {mib:>10.1f} {mib / seq * 1024:>11.2f} {timing:>22}")
    slopes = {impl: fits(rows, impl) for impl in args.impls.split(",")}
    for impl, f in slopes.items():
        print(
            f"{impl}: {f['bytes_per_token']:,.0f} temp bytes/token (linear fit), "
            f"{f['bytes_per_token_squared']:.2f} bytes/token^2 (quadratic fit), "
            f"x{f['growth_per_doubling']:.2f} per doubling of the length"
        )
    result = {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "shape": {"batch": 1, "heads": args.heads, "kv_heads": args.kv_heads, "dim": args.head_dim},
        "causal_one_segment": True,
        "dtype": "float32",
        "ram_budget_gb": args.ram_budget_gb,
        "repeats": args.repeats,
        "temp_fits": slopes,
        "rows": rows,
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
