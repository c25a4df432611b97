"""`andesvl-jax export gguf`: a checkpoint -> OUTDIR/model.gguf (llama.cpp arch `qwen3`)
[+ OUTDIR/mmproj.gguf, the vision tower + projector for libmtmd, when the checkpoint has one and
--no-mmproj is not given (gguf_mmproj.py)] [+ OUTDIR/lora/NAME.gguf adapters].

Any checkpoint `infer.load.load_model` reads: a training workdir (a QAT run is deployed first, so
its integer codes are what is written), a safetensors directory (official AndesVL, HF Qwen3), a
deployed model. Deployed linears keep their codes and fp16 steps (Q8_0/Q4_0, gguf_quant.py); other
2-D weights take --quant. Layout, names, tokenizer: gguf_tensors.py, gguf_tokenizer.py.
"""

from __future__ import annotations

import argparse
import pathlib

import gguf
from andesvl_jax.export.gguf_file import ARCH, finish
from andesvl_jax.export.gguf_mmproj import (
    MMPROJ_FILE,
    has_vision,
    marker_strings,
    mmproj_graph,
    write_mmproj,
)
from andesvl_jax.export.gguf_tensors import (
    FLOAT_TYPES,
    add_llm_hparams,
    llm_of,
    llm_tensors,
)
from andesvl_jax.export.gguf_tokenizer import add_tokenizer
from andesvl_jax.export.outdir import staged_outdir

from andesvl_jax.compress.deploy import deploy
from andesvl_jax.compress.qlinear import quant_sites

MODEL_FILE = "model.gguf"
LORA_DIR = "lora"


def write_tensors(writer: gguf.GGUFWriter, tensors) -> None:
    for t in tensors:
        writer.add_tensor(t.name, t.data, raw_dtype=t.dtype)


def exportable(model):
    """`model` with any QAT/PTQ QuantLinears deployed to integer codes (separate layers)."""
    return deploy(model, separate_layers=True) if quant_sites(model) else model


FILE_TYPES = {  # the header's "mostly" type, from the tensor type holding most weights
    gguf.GGMLQuantizationType.F32: gguf.LlamaFileType.ALL_F32,
    gguf.GGMLQuantizationType.F16: gguf.LlamaFileType.MOSTLY_F16,
    gguf.GGMLQuantizationType.BF16: gguf.LlamaFileType.MOSTLY_BF16,
    gguf.GGMLQuantizationType.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
    gguf.GGMLQuantizationType.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0,
}


def file_type(tensors) -> gguf.LlamaFileType:
    """`general.file_type`: the type of the 2-D tensors holding the most weights (a deployed W4
    model exported with f32 embeddings is "mostly Q4_0", as llama.cpp's quantizer would label it)."""
    count: dict = {}
    for t in tensors:
        if t.data.ndim == 2:
            block, size = gguf.GGML_QUANT_SIZES[t.dtype]
            count[t.dtype] = count.get(t.dtype, 0) + t.data.nbytes // size * block
    return FILE_TYPES[max(count, key=count.get)] if count else gguf.LlamaFileType.ALL_F32


def write_llm(
    model, tokenizer, path: pathlib.Path, quant: str = "f32", name: str = "", renamed=None
) -> None:
    """Write the LLM of `model` (float or deployed) with `tokenizer` (None: ids only) to `path`;
    `renamed`: token id -> string in the GGUF vocab (the image markers of an mmproj graph)."""
    text = llm_of(model).cfg
    tensors = llm_tensors(model, quant)  # every check runs before a byte is written
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_name(name or "andesvl-jax export")
    writer.add_file_type(file_type(tensors))
    add_llm_hparams(writer, text)
    add_tokenizer(writer, tokenizer, text.vocab_size, renamed)
    write_tensors(writer, tensors)
    finish(writer)


def export_gguf(
    checkpoint: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    quant: str = "f32",
    overwrite: bool = False,
    loras: dict[str, str] | None = None,
    mmproj: bool = True,
) -> pathlib.Path:
    """Export `checkpoint` to the directory `out` (see the module docstring); returns `out`."""
    from andesvl_jax.infer.load import load_model  # noqa: PLC0415 - heavy, CLI-time only

    if quant not in FLOAT_TYPES:
        raise ValueError(f"--quant {quant!r}: choose one of {sorted(FLOAT_TYPES)}")
    model, tokenizer = load_model(checkpoint)
    model = exportable(model)
    mmproj = mmproj and has_vision(model)
    if mmproj:
        mmproj_graph(model)  # every check before a byte is written
    name = pathlib.Path(checkpoint).name
    with staged_outdir(out, overwrite) as stage:
        renamed = marker_strings(model.cfg.tokens) if mmproj else None
        write_llm(model, tokenizer, stage / MODEL_FILE, quant, name=name, renamed=renamed)
        if mmproj:
            write_mmproj(model, stage / MMPROJ_FILE, name=name)
        if loras:
            from andesvl_jax.export.gguf_lora import write_lora  # noqa: PLC0415

            from andesvl_jax.compress.lora_files import load_adapter  # noqa: PLC0415

            (stage / LORA_DIR).mkdir()
            for lora_name, directory in loras.items():
                write_lora(load_adapter(directory), model, stage / LORA_DIR / f"{lora_name}.gguf")
    return pathlib.Path(out)


def _lora_spec(spec: str) -> tuple[str, str]:
    name, sep, directory = spec.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"--lora {spec!r}: expected NAME=ADAPTER_DIR")
    return name, directory


def run(args) -> int:
    out = export_gguf(
        args.checkpoint,
        args.out,
        quant=args.quant,
        overwrite=args.overwrite,
        loras=dict(args.lora or []),
        mmproj=not args.no_mmproj,
    )
    for f in sorted(out.rglob("*.gguf")):
        print(f"wrote {f} ({f.stat().st_size / 2**20:.1f} MiB)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gguf", help="GGUF for llama.cpp: model.gguf (+ mmproj.gguf, LoRA adapters)"
    )
    p.add_argument("--checkpoint", required=True, help="workdir, safetensors dir or deployed model")
    p.add_argument("--out", required=True, help="output directory (written whole or not at all)")
    p.add_argument(
        "--quant", default="f32", choices=sorted(FLOAT_TYPES),
        help="type of the float 2-D weights (deployed integer weights keep their Q8_0/Q4_0 codes)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a previous export in --out")
    p.add_argument(
        "--no-mmproj", action="store_true",
        help="do not write mmproj.gguf (the vision tower) even when the checkpoint has one",
    )  # fmt: skip
    p.add_argument(
        "--lora", action="append", type=_lora_spec, metavar="NAME=ADAPTER_DIR",
        help="also write a PEFT adapter directory as lora/NAME.gguf (repeatable)",
    )  # fmt: skip
    p.set_defaults(func=run)
