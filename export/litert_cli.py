"""`andesvl-jax export litertlm`: a checkpoint's LLM as a LiteRT-LM `.litertlm` bundle."""

from __future__ import annotations

from andesvl_jax.export.litert_convert import QUANT_RECIPES
from andesvl_jax.export.litert_export import DEFAULT_CONTEXT, DEFAULT_PREFILL, export_litertlm


def _lengths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--prefill {text!r}: expected comma-separated lengths, e.g. 32,128") from None


def _grid(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--vision-grid {text!r}: expected HxW patches, e.g. 16x16") from None
    return h, w


def run(args) -> int:
    out = export_litertlm(
        args.checkpoint,
        args.out,
        quant=args.quant,
        prefill_lengths=_lengths(args.prefill),
        context=args.context,
        overwrite=args.overwrite,
        vision_grid=_grid(args.vision_grid),
        int8_full_range=args.int8_full_range,
    )
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, quant {args.quant})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "litertlm", help="the LLM as a LiteRT-LM .litertlm (prefill/decode .tflite + tokenizer)"
    )
    p.add_argument("--checkpoint", required=True, help="training workdir or safetensors dir")
    p.add_argument("--out", required=True, help="output file, *.litertlm")
    p.add_argument("--quant", choices=sorted(QUANT_RECIPES), default="none",
                   help="weights: none (fp32), int8 (converter dynamic range; a deployed W8 model keeps "
                        "its codes), int4 (ai-edge-quantizer)")
    p.add_argument("--prefill", default=",".join(map(str, DEFAULT_PREFILL)),
                   help="prefill signature lengths, comma-separated")
    p.add_argument("--context", type=int, default=DEFAULT_CONTEXT, help="max tokens per session")
    p.add_argument("--vision-grid", default=None,
                   help="also bundle the vision encoder + adapter for one HxW patch grid")
    p.add_argument("--int8-full-range", action="store_true",
                   help="a deployed W8 model: keep codes at -128 (outside TFLite's [-127, 127] "
                        "int8 weights; GPTQ/QAT produce a few) instead of refusing them")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)
