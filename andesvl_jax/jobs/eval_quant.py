"""`andesvl-jax eval-quant`: every quantization setting x method of a trained model, measured.

    andesvl-jax eval-quant --checkpoint runs/demo/sft --out runs/demo/quant

For each setting (a compress.rules recipe) and method (rtn, gptq, qat), `quantize` writes the
deployed model to OUT/<setting>/<method> (kept: a rerun skips finished ones), and the deployed
model — loaded back from its file, the integer forward a device runs — is scored on the demo's
held-out questions against the float model:

* top-1 decode consistency: teacher-forced on the float model's greedy answers, the fraction of
  answer positions where the two argmaxes agree (eval/quant_metrics.py);
* exact match of its own greedy answers (as `demo`);
* perplexity of the reference answers;
* bits per weight of the LLM linears counted from the stored bytes (compress/bpw.py).

Writes OUT/eval_quant.json, OUT/eval_quant.md (the table) and OUT/eval_quant.png (consistency and
exact match vs bits per weight).
"""

from __future__ import annotations

import json
import pathlib
import time

from andesvl_jax.data.atomic_io import atomic_write_text

SETTINGS = ("w8a16", "w4a16_g32", "w4a8_g32", "w3a16_g32", "w2a16_g32", "mixed")
METHODS = ("rtn", "gptq", "qat")


def scorer(float_dir: pathlib.Path, samples: int):
    """model -> metrics against the float model of `float_dir` on `samples` held-out questions."""
    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.eval.metrics import evaluate_exact_match
    from andesvl_jax.eval.quant_metrics import (
        answer_predictions,
        fitting,
        perplexity,
        top1_consistency,
        with_answers,
    )
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.jobs.demo import held_out

    d = load_run_config(float_dir).data
    shapes = dict(
        image_max_size=d.image_max_size, max_tokens=d.max_tokens, max_patches=d.max_patches
    )
    questions = held_out(d, samples)

    def engine(model, tokenizer):
        return Engine(
            model, tokenizer, image_max_size=d.image_max_size, max_prompt_tokens=d.max_tokens,
            max_patches=d.max_patches, batch_size=50,
        )  # fmt: skip

    float_model, tokenizer = load_model(float_dir)
    float_engine = engine(float_model, tokenizer)
    float_answers = [c.answer for c in float_engine.generate(questions, max_new_tokens=8)]
    generated = with_answers(questions, float_answers)
    # a float answer too long for the token budget (an untrained model's ramble) cannot be teacher-
    # forced: those questions are left out of the consistency score, and counted
    kept = fitting(float_model.cfg, tokenizer, generated, **shapes)
    generated = [generated[i] for i in kept]
    reference = answer_predictions(float_model, tokenizer, generated, **shapes)

    def score(model, tok) -> dict:
        em = evaluate_exact_match(engine(model, tok), questions)
        return {
            "exact_match": em["accuracy"],
            "per_task": em["per_task"],
            **top1_consistency(reference, answer_predictions(model, tok, generated, **shapes)),
            "consistency_questions": len(generated),
            "consistency_skipped_too_long": len(questions) - len(generated),
            **perplexity(answer_predictions(model, tok, questions, **shapes)),
        }

    return score, (float_model, tokenizer)


def table(rows: list[dict]) -> str:
    lines = [
        "| setting | method | top-1 consistency | exact match | perplexity | LLM-linear BPW | file bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bpw = f"{r['bpw']:.3f}" if "bpw" in r else "float"
        size = f"{r['file_bytes']:,}" if "file_bytes" in r else "-"
        lines.append(
            f"| {r['setting']} | {r['method']} | {r['top1_consistency']:.2%} | "
            f"{r['exact_match']:.1%} | {r['perplexity']:.3f} | {bpw} | {size} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for metric, ax in zip(("top1_consistency", "exact_match"), axes, strict=True):
        for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "float"):
            pts = sorted((r["bpw"], r[metric]) for r in rows if r["method"] == method)
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", label=method)
        ref = next(r for r in rows if r["method"] == "float")
        ax.axhline(ref[metric], color="grey", ls="--", label="float")
        ax.set_xlabel("bits per weight (LLM linears, stored bytes)")
        ax.set_title(metric.replace("_", " "))
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args) -> int:
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.jobs.quantize import REPORT, quantize

    out, float_dir = pathlib.Path(args.out), pathlib.Path(args.checkpoint)
    score, (float_model, tok) = scorer(float_dir, args.samples)
    rows = [{"setting": "float", "method": "float", **score(float_model, tok)}]
    for setting in args.settings.split(","):
        for method in args.methods.split(","):
            target = out / setting / method
            start = time.perf_counter()
            if not (target / REPORT).is_file():  # written last: the cell is complete
                quantize(
                    float_dir, setting, method, target, calib_batches=args.calib_batches,
                    overrides=args.overrides, steps=args.qat_steps, overwrite=True,
                )  # fmt: skip
            report = json.loads((target / REPORT).read_text())
            model, tokenizer = load_model(target)
            row = {
                "setting": setting,
                "method": method,
                **score(model, tokenizer),
                "bpw": report["bits"]["llm_linear_bpw"],
                "file_bytes": report["bits"]["file_bytes"],
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            print(
                f"{setting:10s} {method:5s} top-1 {row['top1_consistency']:.2%}  "
                f"EM {row['exact_match']:.1%}  ppl {row['perplexity']:.3f}  bpw {row['bpw']:.3f}",
                flush=True,
            )
            atomic_write_text(out / "eval_quant.json", json.dumps(rows, indent=2))
    text = table(rows)
    print(text)
    atomic_write_text(out / "eval_quant.md", text + "\n")
    plot(rows, out / "eval_quant.png")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-quant", help="quantize a model by every setting x method and score each vs float"
    )
    p.add_argument("--checkpoint", required=True, help="the float model (a training workdir)")
    p.add_argument("--out", required=True, help="where the deployed models and tables go")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--samples", type=int, default=300, help="held-out questions")
    p.add_argument("--calib-batches", type=int, default=4)
    p.add_argument("--qat-steps", type=int, default=None, help="qat steps (default: the config's)")
    p.set_defaults(func=run, accepts_overrides=True)
