"""llama.cpp decode (our GGUF export) vs our engine, same random weights, same run (issue 15).

    python benchmarks/gguf_decode.py                     # Qwen3-0.6B shape, batch 1 (2 cores: ~10 min)
    python benchmarks/gguf_decode.py --size tiny --repeats 3

One random AndesVL of the size (the preset's LLM, a tiny vision tower: prompts are text) is decoded
by our `generate` in the Engine's layout (fp32, the baseline) and exported with `export gguf` (f16,
to stay within memory); llama.cpp's own quantizer (`llama_model_quantize`) makes Q8_0, Q4_0 and
Q4_K_M from that file. Each llama.cpp file is decoded greedily with flash attention off and an f32
KV cache (export/gguf_runtime.py; CPU weight repacking off: it crashes in this build, tiny and
0.6B). Decode step = (T(N) - T(1)) / (N - 1) per repeat (decode.py's protocol); the table gives
decode tokens/s as median [min-max] over the repeats, the ratio to our fp32 engine, and greedy
agreement with it (fraction of the N tokens), for each `--threads` count. Our engine is timed first
and freed before llama.cpp runs, to stay within memory. Writes
benchmarks/results/gguf_decode.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import pathlib
import platform
import shutil
import tempfile
import time

import numpy as np
from decode import ours_runner, spread

SIZES = {"tiny": ("tiny", 64, 32), "0.6b": ("0.6b", 64, 32)}
LLAMA_TYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15}  # llama_ftype values


def random_model(preset: str):
    from flax import nnx

    from andesvl_jax.config import get_preset
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.models.andesvl import AndesVL

    cfg = dataclasses.replace(
        get_preset(preset, scan_layers=False), vision=get_preset("tiny").vision
    )
    return decoding_layout(AndesVL(cfg, rngs=nnx.Rngs(0)))


def llama_quantize(src: pathlib.Path, dst: pathlib.Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize {src} -> {dst} failed")


def time_steps(call, new_tokens: int, repeats: int) -> tuple[list[float], list[int]]:
    call(1)
    tokens = list(call(new_tokens)[1])
    steps = []
    for _ in range(repeats):
        t1, _ = call(1)
        tn, _ = call(new_tokens)
        steps.append((tn - t1) / (new_tokens - 1))
    return steps, tokens


def llama_runner(path: pathlib.Path, ids: list[int], threads: int):
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    runtime = LlamaCpp(path, n_ctx=256, n_threads=threads)  # no repacking: it crashes here

    def call(n):
        start = time.perf_counter()
        out = runtime.greedy(ids, n)
        return time.perf_counter() - start, out

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="0.6b")
    parser.add_argument("--types", default="q8_0,q4_0,q4_k_m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="llama.cpp thread counts to time")
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "gguf_decode.json")
    )
    args = parser.parse_args()

    _, prompt_len, new_tokens = SIZES[args.size]
    work = pathlib.Path(tempfile.mkdtemp(prefix="gguf_decode_"))
    try:
        rows = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, rows, prompt_len, new_tokens)


def measure(args, work: pathlib.Path) -> list[dict]:
    from andesvl_jax.export.gguf import write_llm

    preset, prompt_len, new_tokens = SIZES[args.size]
    model = random_model(preset)
    vocab = model.cfg.text.vocab_size
    ids = np.random.default_rng(0).integers(0, vocab, (1, prompt_len)).astype(np.int32)

    # f16: the writer holds every tensor until it writes, so f32 at 0.6B would need ~2x 2.4 GB
    files = {"f16": work / "f16.gguf"}
    write_llm(model, None, files["f16"], quant="f16")
    steps, tokens = {}, {}
    ours = ours_runner(model, ids)

    def ours_call(n):
        seconds, out = ours(n)
        return seconds, np.asarray(out)[0]

    steps["ours fp32"], ours_tokens = time_steps(ours_call, new_tokens, args.repeats)
    tokens["ours fp32"] = ours_tokens
    model = ours = ours_call = None  # free the fp32 model before llama.cpp loads its files
    gc.collect()
    for name in args.types.split(","):
        files[name] = work / f"{name}.gguf"
        llama_quantize(files["f16"], files[name], LLAMA_TYPES[name])
    for name, path in files.items():
        for threads in map(int, args.threads.split(",")):
            key = f"llama.cpp {name} ({threads} thr)"
            runner = llama_runner(path, ids[0].tolist(), threads)
            steps[key], tokens[key] = time_steps(runner, new_tokens, args.repeats)
            runner = None
            gc.collect()
    base = np.asarray(steps["ours fp32"])
    rows = []
    for name, s in steps.items():
        s = np.asarray(s)
        rows.append(
            {
                "engine": name,
                "file_mib": None if name == "ours fp32" else
                files[name.split()[1]].stat().st_size / 2**20,
                "decode_tok_s": spread(1 / s),
                "speed_vs_ours": spread(base / s),
                "greedy_agreement_vs_ours": float(
                    np.mean(np.asarray(tokens[name]) == np.asarray(ours_tokens))
                ),
            }
        )  # fmt: skip
    return rows


def report(args, rows, prompt_len, new_tokens) -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, size {args.size}, batch 1, "
        f"prompt {prompt_len}, {new_tokens} new tokens, repeats {args.repeats} "
        "(shared machine: other sessions were running)"
    )
    print("| engine | file MiB | decode tok/s median [min-max] | x ours fp32 | greedy agreement |")
    print("|---|---|---|---|---|")
    for r in rows:
        t, x = r["decode_tok_s"], r["speed_vs_ours"]
        mib = "-" if r["file_mib"] is None else f"{r['file_mib']:.0f}"
        print(
            f"| {r['engine']} | {mib} | {t['median']:.1f} [{t['min']:.1f}-{t['max']:.1f}] | "
            f"{x['median']:.2f} | {r['greedy_agreement_vs_ours']:.2f} |"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"size": args.size, "prompt_len": prompt_len, "new_tokens": new_tokens,
             "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
             "rows": rows}, indent=2,
        ) + "\n"
    )  # fmt: skip


if __name__ == "__main__":
    main()
