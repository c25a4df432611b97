"""Kernel benchmarks: Pallas vs the XLA reference for every kernel over a sweep of shapes.

    python benchmarks/kernel_speed.py                # full sweep (decode M=1..16, prefill M=512..4096,
                                                # K,N=1024..8192, attention 1k-16k tokens); GPU/TPU
    python benchmarks/kernel_speed.py --quick        # small shapes; what runs on a CPU box

Prints a table and writes JSON (--out). Each row gives the median time of both implementations and
what it achieved: GB/s for the weight-streaming matmuls, TFLOP/s for attention and prefill, each
as a fraction of the device's ceilings measured at start (a large copy for bandwidth, a large bf16
matmul for compute). On CPU the Pallas column is interpret mode: it checks that the kernels run and
is NOT a kernel speed; the script says so in the table and the JSON (`kernel_speed_measured`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from andesvl_jax.kernels import get_kernel, quantize_weight, sparsify_weight
from andesvl_jax.kernels.quant_matmul import quantize_activations


def timed(fn: Callable, *args, repeats: int) -> float:
    """Median wall seconds of a jitted call (compiled and warmed first)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_ceilings(quick: bool, repeats: int) -> dict:
    """Achievable HBM/DRAM bandwidth (GB/s) and bf16 matmul throughput (TFLOP/s) on this device."""
    n = 1 << (22 if quick else 28)
    x = jnp.ones((n,), jnp.float32)
    copy = jax.jit(lambda a: a * 2.0)
    bandwidth = 2 * x.nbytes / timed(copy, x, repeats=repeats) / 1e9
    m = 512 if quick else 8192
    a = jnp.ones((m, m), jnp.bfloat16)
    mm = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    tflops = 2 * m**3 / timed(mm, a, a, repeats=repeats) / 1e12
    return {"bandwidth_gbs": bandwidth, "matmul_tflops": tflops}


def _weight(rng, k, n):
    return jnp.asarray(rng.normal(size=(k, n)) * 0.02, jnp.float32)


def case_quant(rng, m, k, n, bits=4, group=128):
    pw = quantize_weight(_weight(rng, k, n), bits, group)
    x = jnp.asarray(rng.normal(size=(m, k)), jnp.bfloat16)
    nbytes = sum(p.nbytes for p in pw.planes) + pw.scales.nbytes + x.nbytes + m * n * 2
    return "quantized_matmul", (x, pw), {}, 2 * m * k * n, nbytes


def case_quant_a8(rng, m, k, n, bits=4, group=128):
    pw = quantize_weight(_weight(rng, k, n), bits, group)
    x_q, x_s = quantize_activations(jnp.asarray(rng.normal(size=(m, k)), jnp.float32))
    nbytes = sum(p.nbytes for p in pw.planes) + pw.scales.nbytes + x_q.nbytes + m * n * 2
    return "quantized_matmul_a8", (x_q, x_s, pw), {}, 2 * m * k * n, nbytes


def case_sparse(rng, m, k, n, group=128):
    sw = sparsify_weight(_weight(rng, k, n), group)
    x = jnp.asarray(rng.normal(size=(m, k)), jnp.bfloat16)
    nbytes = sw.index.nbytes + sw.values.nbytes + sw.scales.nbytes + x.nbytes + m * n * 2
    return "sparse_matmul", (x, sw), {}, 2 * m * k * n, nbytes


def case_lora(rng, m, k, n, adapters=4, rank=16):
    x = jnp.asarray(rng.normal(size=(m, k)), jnp.bfloat16)
    w = _weight(rng, k, n).astype(jnp.bfloat16)
    a = jnp.asarray(rng.normal(size=(adapters, k, rank)) * 0.02, jnp.bfloat16)
    b = jnp.asarray(rng.normal(size=(adapters, rank, n)) * 0.02, jnp.bfloat16)
    ids = jnp.asarray(rng.integers(-1, adapters, size=m), jnp.int32)
    flops = 2 * m * k * n + 2 * m * rank * (k + n)
    return (
        "lora_matmul",
        (x, w, a, b, ids),
        {"scale": 1.0},
        flops,
        w.nbytes + a.nbytes + b.nbytes + x.nbytes,
    )


def case_attention(rng, seq, heads=16, kv_heads=8, head_dim=128, segments=4):
    shape = lambda h: (1, seq, h, head_dim)  # noqa: E731
    q = jnp.asarray(rng.normal(size=shape(heads)), jnp.bfloat16)
    k = jnp.asarray(rng.normal(size=shape(kv_heads)), jnp.bfloat16)
    v = jnp.asarray(rng.normal(size=shape(kv_heads)), jnp.bfloat16)
    seg = jnp.repeat(jnp.arange(1, segments + 1, dtype=jnp.int32), seq // segments)[None]
    pos = (jnp.arange(seq, dtype=jnp.int32) % (seq // segments))[None]
    kw = dict(q_segment_ids=seg, kv_segment_ids=seg, q_positions=pos, kv_positions=pos, causal=True)
    visible_pairs = (
        segments * (seq // segments) * (seq // segments + 1) / 2
    )  # causal within segments
    return "attention", (q, k, v), kw, 4 * heads * head_dim * visible_pairs, 4 * q.nbytes


def sweep(quick: bool):
    """(case builder, shape kwargs) for every benchmark row."""
    if quick:
        mkn = [(m, 256, 256) for m in (1, 16, 64)]
        seqs = [128, 256]
        attn = dict(heads=4, kv_heads=2, head_dim=64)
    else:
        mkn = [
            (m, k, n)
            for m in (1, 4, 16, 512, 2048, 4096)
            for k, n in ((1024, 1024), (4096, 4096), (8192, 8192), (4096, 8192))
        ]
        seqs = [1024, 4096, 16384]
        attn = {}
    rows = [
        (c, dict(m=m, k=k, n=n))
        for c in (case_quant, case_quant_a8, case_sparse, case_lora)
        for m, k, n in mkn
    ]
    return rows + [(case_attention, dict(seq=s, **attn)) for s in seqs]


def run(args) -> dict:
    rng = np.random.default_rng(0)
    backend = jax.default_backend()
    speed_measured = backend != "cpu"
    ceilings = measure_ceilings(args.quick, args.repeats)
    rows = []
    for builder, shape in sweep(args.quick):
        op, call_args, kw, flops, nbytes = builder(rng, **shape)
        if args.only and op not in args.only:
            continue
        row = {"kernel": op, "shape": shape, "flops": flops, "bytes": nbytes}
        for impl in ("xla", "pallas"):
            kernel = get_kernel(op, impl)
            fn = jax.jit(lambda *a, f=kernel, kw=kw: f(*a, **kw))
            seconds = timed(fn, *call_args, repeats=args.repeats)
            row[impl] = {
                "seconds": seconds,
                "tflops": flops / seconds / 1e12,
                "gbs": nbytes / seconds / 1e9,
                "frac_compute": flops / seconds / 1e12 / ceilings["matmul_tflops"],
                "frac_bandwidth": nbytes / seconds / 1e9 / ceilings["bandwidth_gbs"],
            }
        rows.append(row)
        print_row(row)
    return {
        "backend": backend,
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "quick": args.quick,
        "kernel_speed_measured": speed_measured,
        "ceilings": ceilings,
        "rows": rows,
    }


def print_row(row: dict) -> None:
    shape = ",".join(f"{k}={v}" for k, v in row["shape"].items())
    x, p = row["xla"], row["pallas"]
    print(
        f"{row['kernel']:<20} {shape:<24} {x['seconds'] * 1e3:>10.3f} {p['seconds'] * 1e3:>10.3f} "
        f"{x['seconds'] / p['seconds']:>7.2f}x {p['gbs']:>9.1f} {p['frac_bandwidth']:>6.1%} "
        f"{p['tflops']:>8.3f} {p['frac_compute']:>6.1%}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (CPU smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (median)")
    parser.add_argument("--only", nargs="*", help="kernel names to run (default: all)")
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/kernels.json")
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 20)
    backend = jax.default_backend()
    print(f"backend={backend} device={jax.devices()[0]} jax={jax.__version__}")
    if backend == "cpu":
        print("CPU: the Pallas column runs in INTERPRET mode; no kernel speed is measured here.")
    print(
        f"{'kernel':<20} {'shape':<24} {'xla ms':>10} {'pallas ms':>10} {'speedup':>8} "
        f"{'GB/s':>9} {'%bw':>6} {'TFLOP/s':>8} {'%peak':>6}"
    )
    result = run(args)
    c = result["ceilings"]
    print(
        f"ceilings: {c['bandwidth_gbs']:.1f} GB/s copy, "
        f"{c['matmul_tflops']:.3f} TFLOP/s bf16 matmul "
        "(GB/s, TFLOP/s and % columns are the Pallas implementation's)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
