"""Long-context prefill and decode with an evicting KV cache vs the full cache (issue 16, item 3).

    python benchmarks/kv_long_context.py --shape tiny --length 131072 --budgets full,0.25,0.1
    python benchmarks/kv_long_context.py --shape 0.6b --layers 2 --length 32768 --budgets full,0.25

Every condition (full cache, or the `--policy` at a budget kept) runs in its own worker process
on a randomly initialised model of the shape (fp32, batch 1, random prompt tokens), so the peak
RSS of a condition is its own. A worker compiles the prefill (`infer.generate._prefill` for the
full cache, `infer.kv.prefill.compact_prefill` otherwise, the code `Engine.generate` runs) and a
decode loop of `--decode-steps` greedy steps on the cache it leaves, then times:
  * prefill: `--prefill-repeats` runs (compile excluded) -> seconds per 1K prompt tokens;
  * decode: `--repeats` runs of the decode loop -> tokens/s (batch 1), median and min-max;
  * memory: the worker's peak RSS (ru_maxrss, model weights and the JAX runtime included) and
    XLA's own figures for the compiled prefill (arguments + outputs + temporaries, bytes) and the
    cache the decode reads (bytes actually allocated).
The per-token cache bytes of the full condition give the 128K-token cache of the 0.6B and 4B
shapes (all their layers, fp32 and bf16). Prints a table and writes
benchmarks/results/kv_long_context_<shape>_<length>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import numpy as np

PROTOCOL = "@@kv-worker "
COMPILED = "@@kv-compiled "  # the compiled prefill's memory, printed before it runs


def build(shape: str, layers: int | None):
    from flax import nnx

    from andesvl_jax.config import get_preset
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.models.andesvl import AndesVL

    text = {"num_layers": layers} if layers else {}
    cfg = get_preset(shape, scan_layers=False, text=text)
    return decoding_layout(AndesVL(cfg, rngs=nnx.Rngs(0)))


def worker(spec: dict) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from andesvl_jax.infer.generate import _kv_arguments, _prefill
    from andesvl_jax.infer.kv import get_policy
    from andesvl_jax.infer.kv.prefill import compact_prefill

    model = build(spec["shape"], spec["layers"])
    gc.collect()  # the layout's source weights
    cfg = model.cfg.text
    length, chunk, steps = spec["length"], spec["chunk"], spec["decode_steps"]
    ids = np.random.default_rng(0).integers(32, 127, size=(1, length)).astype(np.int32)
    lengths = np.array([length], np.int32)
    graphdef, state = nnx.split(model)
    budget = spec["budget"]
    _plan = None
    if budget == "full":
        cache = model.init_cache(1, length + steps)

        def prefill(state, ids, lengths, cache):
            return _prefill(graphdef, state, ids, lengths, None, None, cache, chunk)

        args = (state, ids, lengths, cache)
    else:
        kv, _plan = _kv_arguments(
            model, get_policy(spec["policy"]), float(budget), ids, lengths, None, None,
            t=length, chunk=chunk, max_new=steps,
        )  # fmt: skip

        def prefill(state, ids, lengths, targets, vision):
            last, cache, _ = compact_prefill(
                graphdef, state, ids, lengths, None, None, vision, targets, kv["kv"], chunk
            )
            return last, cache

        args = (state, ids, lengths, kv["kv_targets"], kv["vision"])

    def decode(state, last, cache):
        m = nnx.merge(graphdef, state)
        token = jnp.argmax(m.llm.logits(last), -1).astype(jnp.int32)

        def body(_, carry):
            token, cache = carry
            logits, cache = nnx.merge(graphdef, state)(token[:, None], cache=cache)
            return jnp.argmax(logits[:, -1], -1).astype(jnp.int32), cache

        return jax.lax.fori_loop(0, steps, body, (token, cache))[0]  # the cache stays inside

    prefill_bytes, compile_s, prefill_s = None, None, []
    if spec["fill"] in ("prefill", "compile"):
        start = time.perf_counter()
        prefill_c = jax.jit(prefill).lower(*args).compile()
        compile_s = time.perf_counter() - start
        mem = prefill_c.memory_analysis()
        if mem is not None:
            prefill_bytes = int(
                mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            )
        print(COMPILED + json.dumps({"compile_s": compile_s, "prefill_program_bytes": prefill_bytes}),
              flush=True)  # fmt: skip
        if spec["fill"] == "compile":  # XLA's memory figures only: nothing runs
            return {**spec, "compile_s": compile_s, "prefill_program_bytes": prefill_bytes}
        for _ in range(spec["prefill_repeats"]):
            start = time.perf_counter()
            last, cache = jax.block_until_ready(prefill_c(*args))
            prefill_s.append(time.perf_counter() - start)
    else:  # "random": the cache a prefill would leave, filled with random entries (no prefill)
        last, cache = random_fill(model, length, steps, None if budget == "full" else _plan)
    cache_bytes = int(sum(x.nbytes for x in jax.tree.leaves(cache)))
    decode_c = jax.jit(decode).lower(state, last, cache).compile()
    jax.block_until_ready(decode_c(state, last, cache))
    decode_s = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        jax.block_until_ready(decode_c(state, last, cache))
        decode_s.append(time.perf_counter() - start)
    return {
        **spec,
        "compile_s": compile_s,
        "prefill_s": prefill_s,
        "prefill_s_per_1k": [x / (length / 1024) for x in prefill_s],
        "decode_tok_s": [steps / s for s in decode_s],
        "cache_bytes": cache_bytes,
        "cache_bytes_per_token": cache_bytes / (length + steps) if budget == "full" else None,
        "prefill_program_bytes": prefill_bytes,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "text": {
            "layers": cfg.num_layers,
            "kv_heads": cfg.num_kv_heads,
            "head_dim": cfg.head_dim,
            "hidden": cfg.hidden_size,
        },  # fmt: skip
    }


def random_fill(model, length: int, steps: int, plan):
    """(last hidden [1, d], cache) as after a `length`-token prefill, with random K/V entries: the
    full cache (length filled slots of length + steps) or the plan's compact decode buffers (each
    layer's kept count of its capacity, positions spread over the prompt). Decode reads every
    slot whatever it holds, so its step time does not depend on the values."""
    import jax
    import jax.numpy as jnp

    from andesvl_jax.infer.kv.prefill import empty_cache
    from andesvl_jax.models.kv_cache import CompactKVCache, KVCache

    cfg = model.cfg.text
    keys = iter(jax.random.split(jax.random.key(0), 4 * cfg.num_layers + 1))
    last = jax.random.normal(next(keys), (1, cfg.hidden_size), jnp.float32)
    n = cfg.num_kv_heads
    if plan is None:
        shape = (n, length + steps, cfg.head_dim)
        k = tuple(jax.random.normal(next(keys), shape) for _ in range(cfg.num_layers))
        v = tuple(jax.random.normal(next(keys), shape) for _ in range(cfg.num_layers))
        return last, KVCache(k, v, jnp.array([length], jnp.int32))
    empty = empty_cache(cfg, 1, plan.setup.decode, jnp.float32)
    layers = []
    for layer, kept in zip(empty.layers, plan.targets[:, 0], strict=True):
        slots = layer.pos.shape[1]
        positions = jnp.where(
            jnp.arange(slots) < kept, (jnp.arange(slots) * length) // int(kept), -1
        )
        layers.append(
            layer._replace(
                k=jax.random.normal(next(keys), layer.k.shape),
                v=jax.random.normal(next(keys), layer.v.shape),
                pos=jnp.broadcast_to(positions, layer.pos.shape).astype(jnp.int32),
                fill=jnp.array([int(kept)], jnp.int32),
            )
        )
    return last, CompactKVCache(tuple(layers), jnp.array([length], jnp.int32))


def run_worker(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        compiled = [
            json.loads(x[len(COMPILED) :]) for x in out.splitlines() if x.startswith(COMPILED)
        ]
        return {**spec, **(compiled[0] if compiled else {}),
                "error": f"did not finish in {timeout:.0f} s"}  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith(PROTOCOL):
            return json.loads(line[len(PROTOCOL) :])
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    return {**spec, "error": f"worker exit {proc.returncode}: {' | '.join(tail)}"}


def spread(values) -> dict:
    v = np.asarray(values, float)
    return {
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": len(v),
    }


def cache_128k(per_token_per_layer_kv: float) -> dict:
    """The 131 072-token cache (+ nothing for decode) of the 0.6B and 4B LLMs, from the measured
    bytes per token, layer and (KV head x head_dim) unit, in fp32 and bf16, full and 25 %."""
    from andesvl_jax.config import PRESETS

    out = {}
    for name in ("0.6b", "4b"):
        t = PRESETS[name].text
        full = per_token_per_layer_kv * t.num_layers * t.num_kv_heads * t.head_dim * 131072
        out[name] = {
            "layers": t.num_layers,
            "fp32_gib": full / 2**30,
            "bf16_gib": full / 2 / 2**30,
            "fp32_25pct_gib": full / 4 / 2**30,
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--shape", default="tiny", choices=("tiny", "0.6b", "4b"))
    p.add_argument("--layers", type=int, default=None, help="LLM depth override (default: preset)")
    p.add_argument("--length", type=int, default=131072)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--policy", default="multiwindow")
    p.add_argument("--budgets", default="full,0.25", help="'full' and/or fractions kept")
    p.add_argument("--decode-steps", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="decode timing repeats")
    p.add_argument("--prefill-repeats", type=int, default=1)
    p.add_argument(
        "--fill",
        default="prefill",
        choices=("prefill", "random", "compile"),
        help="prefill: run the real prefill; random: decode only, on a cache of random entries "
        "shaped as the prefill leaves it (no prefill timing or program bytes); compile: compile "
        "the prefill and report its memory, run nothing",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per condition")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.worker:
        print(PROTOCOL + json.dumps(worker(json.loads(a.worker))), flush=True)
        return
    results = []
    for budget in a.budgets.split(","):
        spec = dict(
            shape=a.shape, layers=a.layers, length=a.length, chunk=a.chunk, policy=a.policy,
            budget=budget, decode_steps=a.decode_steps, repeats=a.repeats,
            prefill_repeats=a.prefill_repeats, fill=a.fill,
        )  # fmt: skip
        load = os.getloadavg()[0]
        res = run_worker(spec, a.timeout)
        res["load_before"] = load
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "text"}), flush=True)
    full = next((r for r in results if r["budget"] == "full" and "decode_tok_s" in r), None)
    derived = None
    if full:
        t = full["text"]
        unit = full["cache_bytes_per_token"] / (t["layers"] * t["kv_heads"] * t["head_dim"])
        derived = {"bytes_per_token_layer_kv_dim": unit, "cache_131072": cache_128k(unit)}
    print(f"\n{a.shape} (LLM layers {a.layers or 'preset'}), {a.length} tokens, chunk {a.chunk}")
    print("| budget | peak RSS GiB | prefill program MiB | cache MiB | prefill s / 1K tok | "
          "decode tok/s (median [min, max], n) | x full |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    base = spread(full["decode_tok_s"])["median"] if full else None
    for r in results:
        if "decode_tok_s" not in r and "error" not in r:  # --fill compile
            print(
                f"| {r['budget']} | - | {r['prefill_program_bytes'] / 2**20:.0f} | compiled only |"
            )
            continue
        if "error" in r:
            prog = r.get("prefill_program_bytes")
            mib = "-" if prog is None else f"{prog / 2**20:.0f}"
            print(f"| {r['budget']} | {r['error']} | {mib} (compiled) |")
            continue
        d = spread(r["decode_tok_s"])
        pf = spread(r["prefill_s_per_1k"] or [float("nan")])
        prog = r["prefill_program_bytes"]
        ratio = f"{d['median'] / base:.2f}" if base else "-"
        print(
            f"| {r['budget']} | {r['peak_rss_gib']:.2f} | "
            f"{'-' if prog is None else f'{prog / 2**20:.0f}'} | {r['cache_bytes'] / 2**20:.1f} | "
            f"{pf['median']:.2f} | {d['median']:.1f} [{d['min']:.1f}, {d['max']:.1f}], {d['n']} | "
            f"{ratio} |"
        )
    if derived:
        for name, v in derived["cache_131072"].items():
            print(f"128K-token cache, {name} ({v['layers']} layers): fp32 {v['fp32_gib']:.1f} GiB, "
                  f"bf16 {v['bf16_gib']:.1f} GiB, 25 % fp32 {v['fp32_25pct_gib']:.1f} GiB")  # fmt: skip
    out = pathlib.Path(a.out or pathlib.Path(__file__).parent / "results" /
                       f"kv_long_context_{a.shape}_{a.length}.json")  # fmt: skip
    machine = {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    out.write_text(json.dumps({"machine": machine, "command": sys.argv, "results": results,
                               "derived": derived}, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
