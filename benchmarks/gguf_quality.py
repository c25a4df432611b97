"""Exported GGUF files in llama.cpp vs the float model: top-1 decode consistency (issue 15).

    python benchmarks/gguf_quality.py --checkpoint runs/demo/sft --deployed qat=runs/q/w4_qat \\
        --deployed rtn=runs/q/w4_rtn [--samples 100]

AndesVL's QAT metric, measured in the runtime: on the demo's held-out questions (images included)
the float model generates an 8-token answer; every variant is then run teacher-forced on prompt +
that answer and scored by the fraction of answer positions whose argmax equals the float model's
(eval/quant_metrics.py, the same rows and positions). The float model's embeddings (our vision tower
+ projector merged into the token embeddings) go into llama.cpp as `llama_batch.embd` rows, so only
the LLM differs between variants. Variants: our f32 / f16 / q8_0 exports of the float model;
llama.cpp's own quantizer (`llama_model_quantize`) on the f32 file: Q4_0, Q4_K_M, Q3_K_M, and Q4_0 /
Q4_K_M with the token embedding kept f32 (as our w4a16_g32 recipe keeps it); and each
`--deployed NAME=DIR` (a deployed W4/W8 model, e.g. QAT or RTN from `andesvl-jax quantize`)
exported with its integer codes kept (Q4_0/Q8_0), plus that deployed model in our own engine for
comparison. A second, more sensitive column scores every position of prompt + answer (the
next-token argmax, reference: the f32 export in llama.cpp, which equals our engine to ~1e-6): on
a confident model the answer positions alone saturate near 1.0. Writes benchmarks/results/gguf_quality.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import tempfile

import numpy as np

# llama.cpp's quantizer: name -> (llama_ftype, keep the token embedding / output head f32).
# The f32-embedding rows match our w4a16_g32 recipe, which keeps that table float.
LLAMA_TYPES = {
    "llama.cpp q4_0": (2, False),
    "llama.cpp q4_k_m": (15, False),
    "llama.cpp q4_0, f32 embeddings": (2, True),
    "llama.cpp q4_k_m, f32 embeddings": (15, True),
    "llama.cpp q3_k_m": (12, False),
}
GGML_TYPE_F32 = 0


def encoded_rows(model, tokenizer, samples, shapes):
    """Per sample: (embeddings [T, d] of prompt + answer, answer positions mask [T])."""
    from andesvl_jax.data.encode import answer_only_encoder
    from andesvl_jax.data.packing import assemble_batch

    encoder = answer_only_encoder(model.cfg, tokenizer, **shapes)
    rows = []
    for s in samples:
        batch = assemble_batch(
            [[encoder(s)]], shapes["max_tokens"], shapes["max_patches"],
            tokenizer.special_tokens, model.cfg.vision.patch_size,
        )  # fmt: skip
        n = int(np.sum(batch.segment_ids[0] != 0))
        embeds = np.asarray(model.embed(batch.input_ids, batch.images))[0, :n]
        rows.append((embeds, batch.loss_mask[0, :n] > 0))
    return rows


def runtime_argmax(path: pathlib.Path, rows) -> list[np.ndarray]:
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    runtime = LlamaCpp(path, n_ctx=max(len(e) for e, _ in rows) + 8)
    out = [np.argmax(runtime.embeds_logits(e), -1) for e, _ in rows]  # every position
    runtime.close()
    return out


def consistency(reference: list[np.ndarray], other: list[np.ndarray]) -> tuple[float, int]:
    same = sum(int(np.sum(a == b)) for a, b in zip(reference, other, strict=True))
    total = sum(a.size for a in reference)
    return same / total, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the float model (a demo workdir)")
    parser.add_argument("--deployed", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "gguf_quality.json")
    )
    args = parser.parse_args()
    from andesvl_jax.export.gguf import exportable, write_llm

    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.eval.quant_metrics import answer_predictions, with_answers
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.jobs.demo import held_out

    d = load_run_config(args.checkpoint).data
    shapes = dict(
        image_max_size=d.image_max_size, max_tokens=d.max_tokens, max_patches=d.max_patches
    )
    questions = held_out(d, args.samples)
    model, tokenizer = load_model(args.checkpoint)
    engine = Engine(model, tokenizer, image_max_size=d.image_max_size,
                    max_prompt_tokens=d.max_tokens, max_patches=d.max_patches, batch_size=50)  # fmt: skip
    answers = [c.answer for c in engine.generate(questions, max_new_tokens=8)]
    generated = with_answers(questions, answers)
    reference = answer_predictions(model, tokenizer, generated, **shapes).argmax
    rows = encoded_rows(model, tokenizer, generated, shapes)

    work = pathlib.Path(tempfile.mkdtemp(prefix="gguf_quality_"))
    files = {}
    for quant in ("f32", "f16", "q8_0"):
        files[f"export {quant}"] = work / f"{quant}.gguf"
        write_llm(model, None, files[f"export {quant}"], quant=quant)
    import llama_cpp

    for i, (name, (ftype, float_embeddings)) in enumerate(LLAMA_TYPES.items()):
        files[name] = work / f"llama_{i}.gguf"
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        if float_embeddings:
            params.token_embedding_type = params.output_tensor_type = GGML_TYPE_F32
        assert llama_cpp.llama_model_quantize(
            str(files["export f32"]).encode(), str(files[name]).encode(), params
        ) == 0  # fmt: skip
    results = []
    ours_deployed = {}
    for spec in args.deployed:
        name, _, directory = spec.partition("=")
        deployed, tok = load_model(directory)
        files[f"deployed {name} (codes kept)"] = work / f"deployed_{name}.gguf"
        write_llm(exportable(deployed), None, files[f"deployed {name} (codes kept)"])
        ours_deployed[name] = answer_predictions(deployed, tok, generated, **shapes).argmax
    full = {name: runtime_argmax(path, rows) for name, path in files.items()}
    for name, path in files.items():
        answers = [a[keep] for a, (_, keep) in zip(full[name], rows, strict=True)]
        score, positions = consistency(reference, answers)
        every, n_every = consistency(full["export f32"], full[name])
        results.append({"variant": name, "runtime": "llama.cpp", "top1_consistency": score,
                        "positions": positions, "top1_all_positions": every,
                        "all_positions": n_every,
                        "file_mib": path.stat().st_size / 2**20})  # fmt: skip
    for name, argmax in ours_deployed.items():
        score, positions = consistency(reference, argmax)
        results.append({"variant": f"deployed {name}", "runtime": "ours (deployed forward)",
                        "top1_consistency": score, "positions": positions,
                        "top1_all_positions": None, "all_positions": None,
                        "file_mib": None})  # fmt: skip
    for f in files.values():
        f.unlink()
    print(
        f"machine: {platform.processor() or platform.machine()}; {args.samples} held-out demo "
        f"questions, reference = the float model ({args.checkpoint}) in our engine"
    )
    print("| variant | runtime | top-1 consistency (answers) | positions | "
          "top-1, every position | positions | file MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in results:
        mib = "-" if r["file_mib"] is None else f"{r['file_mib']:.2f}"
        every = "-" if r["top1_all_positions"] is None else f"{r['top1_all_positions']:.4f}"
        print(f"| {r['variant']} | {r['runtime']} | {r['top1_consistency']:.4f} | "
              f"{r['positions']} | {every} | {r['all_positions'] or '-'} | {mib} |")  # fmt: skip
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "samples": args.samples,
                               "results": results}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
