"""Packed 1:4-sparse decode vs dense fp32 and dense W4 at the Qwen3-0.6B LLM shape, one run.

    python benchmarks/sparse_decode.py                  # 28 layers, batch 1 (~8 GB of memory)
    python benchmarks/sparse_decode.py --layers 4       # the same per-layer shapes, fewer layers

Three engines over the same random LLM (the 0.6B text config; a tiny vision tower that text prompts
never touch), each in the decoding layout `Engine` runs (`infer.engine.decoding_layout`):
  * dense fp32: the float model;
  * dense W4: `quantize_model(.., "w4_g32")` deployed (`compress.deploy`: packed int4 + fp16 steps,
    the weight decoded and multiplied, XLA);
  * sparse 1:4 W4: every LLM linear pruned 1:4 (magnitude) with W4 g128 kept values, saved by
    `save_sparse` and loaded packed: `PackedSparseLinear` through `kernels.dispatch.quantized_matmul`
    (impl='auto': the XLA reference on CPU, which decodes the tile to dense and multiplies).
Timing as benchmarks/decode.py: T(n) = one `generate` call making n tokens (compile excluded by a
warm-up), decode step = (T(N) - T(1)) / (N - 1), interleaved engines per repeat, median [min-max].
The bandwidth ceiling of each engine = measured read bandwidth (decode.py's sustained matvec
probe) / the bytes its weights store (every LLM parameter read once per step, the tied embedding
included as the LM head). Writes benchmarks/results/sparse_decode.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from decode import Bandwidth, ours_runner, spread  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def build(layers: int):
    from flax import nnx

    from andesvl_jax.config import TINY_VISION, get_preset
    from andesvl_jax.models.andesvl import AndesVL

    cfg = get_preset("0.6b", scan_layers=False)
    cfg = cfg.replace(vision=TINY_VISION, text=dataclasses.replace(cfg.text, num_layers=layers))
    return AndesVL(cfg, rngs=nnx.Rngs(0))


def llm_bytes(model) -> int:
    import jax
    from flax import nnx

    return int(sum(x.nbytes for x in jax.tree.leaves(nnx.state(model.llm))))


def engines(layers: int, tmp: pathlib.Path):
    """The three engines, built one after another from the same seed (one float copy at a time)."""
    import gc

    from andesvl_jax.compress import deploy, quantize_model
    from andesvl_jax.compress.prune import prune_model, sparse_structure
    from andesvl_jax.compress.sparse_io import load_sparse, save_sparse
    from andesvl_jax.infer.engine import decoding_layout

    out = {"dense fp32": decoding_layout(build(layers))}
    gc.collect()
    w4 = deploy(quantize_model(build(layers), "w4_g32"), separate_layers=True)
    out["dense W4 g32"] = decoding_layout(w4)
    del w4
    gc.collect()
    sp = sparse_structure(4, 128)(build(layers))
    prune_model(sp, "1:4", "magnitude")
    path = save_sparse(sp, tmp / "sparse.safetensors")
    del sp
    gc.collect()
    out["sparse 1:4 W4 g128"] = decoding_layout(load_sparse(path))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=9)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = engines(args.layers, pathlib.Path(tmp))
    ids = np.random.default_rng(0).integers(0, 1000, size=(1, args.prompt_len)).astype(np.int32)
    runners = {name: ours_runner(m, ids) for name, m in models.items()}
    stored = {name: llm_bytes(m) for name, m in models.items()}
    tokens = {}
    for name, call in runners.items():  # warm-up: compile both shapes
        call(1)
        tokens[name] = np.asarray(call(args.new_tokens)[1])
    bw = Bandwidth(gib=0.5, reads=12)
    steps: dict[str, list] = {n: [] for n in runners}
    reads = []
    order = list(runners)
    for r in range(args.repeats):
        reads.append(bw.window())
        for name in order[r % len(order) :] + order[: r % len(order)]:
            t1 = runners[name](1)[0]
            tn = runners[name](args.new_tokens)[0]
            steps[name].append((tn - t1) / (args.new_tokens - 1))
    rows = []
    for name in runners:
        s = spread(steps[name])
        ceiling = spread([g * 1e9 / stored[name] for g in reads])
        rows.append(
            {
                "engine": name,
                "llm_bytes": stored[name],
                "decode_step_s": s,
                "tok_s": spread([1 / x for x in steps[name]]),
                "ceiling_tok_s": ceiling,
            }
        )
    print(f"{'engine':22} {'LLM bytes':>14} {'tok/s median [min-max]':>28} {'ceiling tok/s':>14}")
    for r in rows:
        t = r["tok_s"]
        print(
            f"{r['engine']:22} {r['llm_bytes']:>14,} "
            f"{t['median']:>10.2f} [{t['min']:.2f}-{t['max']:.2f}]{'':6} "
            f"{r['ceiling_tok_s']['median']:>14.2f}"
        )
    same = {n: bool(np.array_equal(tokens[n], tokens["dense fp32"])) for n in tokens}
    print("greedy tokens equal to dense fp32:", same)
    meta = {
        "command": "python benchmarks/sparse_decode.py "
        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "read_gbs": spread(reads),
    }
    (REPO / "benchmarks/results/sparse_decode.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "tokens_equal_dense": same}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
