"""Greedy parity of the LiteRT-LM export with our engine, per weight format, on a trained checkpoint.

    python benchmarks/litert_parity.py --checkpoint /work/runs/demo/sft --quant none,int8,int4
    python benchmarks/litert_parity.py --checkpoint DEPLOYED_W8 --quant int8,int8-converter

For each --quant the checkpoint's LLM is exported (`export.litert_export.export_litertlm`) and run
on --prompts chat prompts (synthetic --tasks questions, image tags removed: the LLM alone is exported)
with --new-tokens greedy tokens:
  * engine text: the LiteRT-LM Engine's response (CPU) against our `infer.generate` greedy output cut
    at the first stop token, decoded — equal or not per prompt;
  * signature ids: the `.tflite` signatures in ai_edge_litert against our ids (exact);
  * logits: max |ours - litert| / max |ours| over each prompt's teacher-forced positions, and top-1:
    the fraction of those positions whose argmax agrees.
A deployed W8 checkpoint (ours = our deployed forward) exports with `int8` keeping its codes and
steps (export/litert_w8.py); `int8-converter` is the baseline: its float twin (the same dequantized
weights) through the converter's own int8 recipe, which re-derives codes and steps by absmax.
Prints a table and writes benchmarks/results/litert_parity.json. Measured, not asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
CONVERTER = "int8-converter"  # a deployed checkpoint's float twin through the converter's int8


def chat_prompts(tokenizer, n: int, tasks: str) -> list[list[int]]:
    """n generation prompts (ids) of the synthetic eval split's `tasks` (comma-separated task
    names, equal weights), images removed."""
    from andesvl_jax.data.chat import ChatTemplate
    from andesvl_jax.data.sample import IMAGE_TAG, Message
    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext

    mixture = dict.fromkeys(tasks.split(","), 1.0)
    src = SyntheticSource(mixture, size=n, seed=0, split="eval", ctx=TaskContext(28, 84))
    template = ChatTemplate(tokenizer)
    prompts = []
    for i in range(n):
        messages = [
            dataclasses.replace(m, content=m.content.replace(IMAGE_TAG, "").strip())
            if isinstance(m, Message)
            else m
            for m in src[i].prompt
        ]
        pieces = template.conversation_pieces(messages, add_generation_prompt=True)
        prompts.append(np.concatenate([p.ids for p in pieces]).astype(int).tolist())
    return prompts


def stop_cut(ids, stops) -> list[int]:
    ids = [int(t) for t in ids]
    return ids[: next((i for i, t in enumerate(ids) if t in stops), len(ids))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--quant", default="none,int8")
    p.add_argument("--prompts", type=int, default=10)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--tasks", default="text_arith,count,ocr_digits",
                   help="synthetic tasks the prompts come from (data/synthetic)")
    p.add_argument("--int8-full-range", action="store_true", help="keep a deployed model's -128 codes")
    p.add_argument("--out", default=str(RESULTS / "litert_parity.json"))
    args = p.parse_args()

    from andesvl_jax.export.litert_bundle import stop_token_ids
    from andesvl_jax.export.litert_export import export_litertlm
    from andesvl_jax.export.litert_graph import reference_logits
    from andesvl_jax.export.litert_runtime import LiteRTRunner
    from andesvl_jax.export.litert_w8 import float_twin, int8_weights

    from andesvl_jax.infer.generate import greedy_generate
    from andesvl_jax.infer.load import load_model

    model, tok = load_model(args.checkpoint)
    weights = int8_weights(model, True) if CONVERTER in args.quant.split(",") else []
    low = sum(int(np.count_nonzero(w.codes == -128)) for w in weights)
    short = [float(np.mean(np.abs(w.codes).max(1) < 127)) for w in weights]
    stops = set(stop_token_ids(tok))
    prompts = chat_prompts(tok, args.prompts, args.tasks)
    ours = [
        stop_cut(np.asarray(greedy_generate(model, np.asarray([ids]), max_new_tokens=args.new_tokens))[0], stops)
        for ids in prompts
    ]
    want_logits = [reference_logits(model.llm, ids) for ids in prompts]
    rows = []
    with tempfile.TemporaryDirectory(prefix="litert-parity-") as tmp:
        for quant in args.quant.split(","):
            path = pathlib.Path(tmp) / f"model_{quant}.litertlm"
            t0 = time.perf_counter()
            source, recipe = (float_twin(model), "int8") if quant == CONVERTER else (model, quant)
            try:
                export_litertlm(args.checkpoint, path, quant=recipe, model_and_tokenizer=(source, tok),
                                int8_full_range=args.int8_full_range)
            except Exception as e:  # noqa: BLE001 - reported per format, the others still run
                rows.append({"quant": quant, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                continue
            export_s = time.perf_counter() - t0
            runner = LiteRTRunner(path, tok)
            engine_equal, sig_equal, errs, top1, examples = 0, 0, [], [], []
            for ids, want, wl in zip(prompts, ours, want_logits, strict=True):
                text = runner.greedy_text(ids, args.new_tokens)
                got_ids = stop_cut(runner.signature_greedy(ids, args.new_tokens, tuple(stops)), stops)
                engine_equal += text == tok.decode(want)
                sig_equal += got_ids == want
                got = runner.logits(ids)
                errs.append(float(np.abs(got - wl).max() / np.abs(wl).max()))
                top1.append(float(np.mean(got.argmax(-1) == wl.argmax(-1))))
                if len(examples) < 3:
                    examples.append({"ours": tok.decode(want), "litert_lm": text})
            rows.append({
                "quant": quant,
                "prompts": len(prompts),
                "answer_tokens_ours": [len(w) for w in ours],
                "engine_text_equal": engine_equal,
                "signature_ids_equal": sig_equal,
                "logits_rel_err_max": max(errs),
                "logits_rel_err_median": float(np.median(errs)),
                "top1_agreement": float(np.mean(top1)),
                "export_s": export_s,
                "bundle_bytes": path.stat().st_size,
                "examples": examples,
            })
    result = {"command": " ".join(sys.argv), "checkpoint": args.checkpoint,
              "new_tokens": args.new_tokens, "rows": rows}
    if weights:  # channels whose max |code| < 127: the converter's absmax gives other codes there
        result["channels_below_127"] = float(np.mean(short))
        result["codes_at_minus_128"] = low
        print(f"deployed W8 channels with max |code| < 127 (re-derived by the converter): "
              f"{np.mean(short):.1%} (mean over {len(weights)} linears); codes at -128: {low}")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print("| quant | Engine text = ours | signature ids = ours | logits rel err max (median) | top-1 "
          "| bundle KiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['quant']} | error: {r['error']} | | | | |")
            continue
        print(f"| {r['quant']} | {r['engine_text_equal']}/{r['prompts']} | "
              f"{r['signature_ids_equal']}/{r['prompts']} | {r['logits_rel_err_max']:.2e} "
              f"({r['logits_rel_err_median']:.2e}) | {r['top1_agreement']:.3f} | "
              f"{r['bundle_bytes'] / 1024:.0f} |")


if __name__ == "__main__":
    main()
