"""Decode speed: the LiteRT-LM Engine (CPU, XNNPACK) on our exported `.litertlm` vs our own engine.

    python benchmarks/litert_decode.py                        # 0.6B shape, int8, 2 threads
    python benchmarks/litert_decode.py --size tiny --quant none --repeats 3   # seconds

Random weights (nnx.Rngs(0)) at a preset's LLM shape; each phase runs in its own process (same seed,
same weights) so no process holds TensorFlow, the LiteRT runtime and our model at once:
  * export: `export.litert_export.llm_tflite` (prefill_32 + decode, context 512) bundled with a
    word-level tokenizer of the preset's vocabulary size (speed does not depend on the tokenizer);
  * litert: per repeat a fresh session, `--prompt-len` tokens of prompt, `--new-tokens` greedy tokens;
    the Engine's own benchmark info gives decode tokens/s (and prefill tokens/s);
  * ours: `infer.generate.generate` on the model in `infer.engine.decoding_layout` (as `Engine`
    runs it), fp32, same prompt length; decode step = (T(N) - T(1)) / (N - 1), compile excluded.
Reported: median and min-max over the repeats, n. llama.cpp's number comes from the GGUF benchmark
(column left empty here). Prints a table and writes benchmarks/results/litert_decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def build_model(size: str):
    from flax import nnx

    from andesvl_jax.config import get_preset
    from andesvl_jax.models.andesvl import AndesVL

    return AndesVL(get_preset(size, scan_layers=False), rngs=nnx.Rngs(0))


def word_tokenizer(vocab_size: int):
    """A word-level HF tokenizer with `vocab_size` ids and the Qwen special tokens at the end."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from andesvl_jax.data.tokenizer import QWEN_SPECIALS, TextTokenizer

    specials = {s: vocab_size - len(QWEN_SPECIALS) + i for i, s in enumerate(QWEN_SPECIALS)}
    vocab = {f"w{i}": i for i in range(vocab_size - len(QWEN_SPECIALS))} | specials
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(QWEN_SPECIALS))
    return TextTokenizer(tok, name=f"word-level {vocab_size}")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def phase_export(args) -> dict:
    import gc

    from andesvl_jax.export.litert_bundle import write_bundle
    from andesvl_jax.export.litert_convert import convert_saved_model
    from andesvl_jax.export.litert_export import save_llm
    from andesvl_jax.export.litert_graph import SignaturePlan

    model = build_model(args.size)
    tokenizer = word_tokenizer(model.cfg.text.vocab_size)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="litert-bench-sm-") as tmp:
        names = save_llm(model, SignaturePlan((32,), args.context), tmp)
        saved_rss = peak_rss_gib()
        del model
        gc.collect()
        tflite = convert_saved_model(tmp, names, args.quant)
    seconds = time.perf_counter() - t0
    write_bundle(pathlib.Path(args.bundle), tflite, tokenizer, args.context)
    return {"export_s": seconds, "tflite_bytes": len(tflite), "peak_rss_gib": peak_rss_gib(),
            "peak_rss_after_save_gib": saved_rss}


def prompt_ids(n: int, vocab: int) -> list[int]:
    return np.random.default_rng(0).integers(1, min(vocab, 30000), n).tolist()


def phase_litert(args) -> dict:
    import litert_lm

    from andesvl_jax.config import get_preset

    vocab = get_preset(args.size).text.vocab_size
    text = " ".join(f"w{i}" for i in prompt_ids(args.prompt_len, vocab))
    engine = litert_lm.Engine(
        args.bundle, backend=litert_lm.Backend.CPU(thread_count=args.threads), enable_benchmark=True
    )
    decode, prefill = [], []
    for _ in range(args.repeats + 1):  # the first session warms the caches
        session = engine.create_session(
            apply_prompt_template=False,
            sampler_config=litert_lm.SamplerConfig(top_k=1),
            max_output_tokens=args.new_tokens,
        )
        session.run_prefill([text])
        session.run_decode()
        info = session.get_benchmark_info()
        session.close()
        decode.append(info.last_decode_tokens_per_second)
        prefill.append(info.last_prefill_tokens_per_second)
    engine.close()
    return {"decode_tok_s": decode[1:], "prefill_tok_s": prefill[1:], "peak_rss_gib": peak_rss_gib()}


def phase_ours(args) -> dict:
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.infer.generate import greedy_generate

    model = decoding_layout(build_model(args.size))
    ids = np.asarray([prompt_ids(args.prompt_len, model.cfg.text.vocab_size)], np.int32)

    def timed(n):
        t0 = time.perf_counter()
        np.asarray(greedy_generate(model, ids, max_new_tokens=n))
        return time.perf_counter() - t0

    timed(1), timed(args.new_tokens)  # compile both shapes
    steps = []
    for _ in range(args.repeats):
        t1, tn = timed(1), timed(args.new_tokens)
        steps.append((tn - t1) / (args.new_tokens - 1))
    return {"decode_tok_s": [1.0 / s for s in steps], "peak_rss_gib": peak_rss_gib()}


PHASES = {"export": phase_export, "litert": phase_litert, "ours": phase_ours}


def spread(values) -> dict:
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def run_phase(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--size", args.size, "--quant", args.quant,
           "--bundle", args.bundle, "--repeats", str(args.repeats), "--threads", str(args.threads),
           "--prompt-len", str(args.prompt_len), "--new-tokens", str(args.new_tokens),
           "--context", str(args.context)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="0.6b")
    p.add_argument("--quant", default="int8", choices=["none", "int8", "int4"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--phase", choices=sorted(PHASES))
    p.add_argument("--bundle", default=None, help="keep the export here (reused if it exists)")
    p.add_argument("--out", default=str(RESULTS / "litert_decode.json"))
    args = p.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return
    with tempfile.TemporaryDirectory(prefix="litert-bench-") as tmp:
        keep = args.bundle is not None
        args.bundle = args.bundle or str(pathlib.Path(tmp) / "model.litertlm")
        if keep and pathlib.Path(args.bundle).exists():  # reuse an export (0.6B: ~20 min)
            export = {"export_s": float("nan"), "tflite_bytes": pathlib.Path(args.bundle).stat().st_size,
                      "peak_rss_gib": float("nan"), "reused": args.bundle}
        else:
            export = run_phase("export", args)
        load = {"litert": os.getloadavg()[0]}
        litert = run_phase("litert", args)
    load["ours"] = os.getloadavg()[0]
    ours = run_phase("ours", args)
    row = {
        "size": args.size,
        "quant": args.quant,
        "litert_decode_tok_s": spread(litert["decode_tok_s"]),
        "litert_prefill_tok_s": spread(litert["prefill_tok_s"]),
        "ours_fp32_decode_tok_s": spread(ours["decode_tok_s"]),
        "ratio_litert_over_ours": spread(
            np.asarray(litert["decode_tok_s"]) / np.median(ours["decode_tok_s"])
        ),
        "llama_cpp_decode_tok_s": None,
        "export": export,
        "peak_rss_gib": {"litert": litert["peak_rss_gib"], "ours": ours["peak_rss_gib"]},
        "load_average_at_start": load,
    }
    result = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}",
        "threads": args.threads,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "rows": [row],
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    def fmt(s):
        return f"{s['median']:.1f} [{s['min']:.1f}-{s['max']:.1f}] n={s['n']}"

    print("| size | quant | LiteRT-LM decode tok/s | ours fp32 decode tok/s | x ours | llama.cpp "
          "| export s | .tflite MB |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.size} | {args.quant} | {fmt(row['litert_decode_tok_s'])} | "
          f"{fmt(row['ours_fp32_decode_tok_s'])} | {row['ratio_litert_over_ours']['median']:.2f} | – | "
          f"{export['export_s']:.0f} | {export['tflite_bytes'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
