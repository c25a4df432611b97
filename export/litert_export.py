"""Checkpoint -> `.litertlm`: the Qwen3 LLM as prefill/decode signatures, bundled for LiteRT-LM.

`export_litertlm(checkpoint, out, quant=...)` loads any checkpoint `infer.load.load_model` reads
(training workdir, safetensors directory, deployed model), converts the LLM (litert_graph +
litert_convert) and writes the bundle (litert_bundle) to a temporary name beside `out`, renamed
over it at the end. A deployed W8 model exports with --quant int8 and keeps its codes and steps
(litert_w8: its float twin converted, our int8 weights written over the converter's).
"""

from __future__ import annotations

import gc
import pathlib
import tempfile

from andesvl_jax.export.litert_bundle import write_bundle
from andesvl_jax.export.litert_convert import (
    QUANT_RECIPES,
    Signature,
    TensorSpec,
    convert_saved_model,
    save_signatures,
)
from andesvl_jax.export.litert_graph import (
    SignaturePlan,
    cache_shape,
    check_expressible,
    kv_names,
    signature_fn,
    split_llm,
)
from andesvl_jax.export.litert_vision import vision_tflites
from andesvl_jax.export.litert_w8 import Int8MappingError, float_twin, int8_weights, patch_int8
from flax import nnx

from andesvl_jax.compress.deploy import deployed_linears
from andesvl_jax.data.atomic_io import atomic_path
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.load import load_model
from andesvl_jax.models.stack import unstacked

DEFAULT_PREFILL = (32,)
DEFAULT_CONTEXT = 1024


def separate_layers(model):
    """`model` with one module per LLM layer (the exported cache is one buffer per layer)."""
    if not model.cfg.scan_layers:
        return model
    cfg = model.cfg.replace(scan_layers=False)
    return unstacked(lambda: type(model)(cfg, rngs=nnx.Rngs(0)), model)


def llm_signatures(llm, plan: SignaturePlan):
    """(weights, [Signature]) for the LLM under `plan`."""
    cfg = llm.cfg
    check_expressible(cfg)
    graphdef, weights, treedef = split_llm(llm)
    fn = signature_fn(graphdef, treedef, cfg.num_layers)
    names = kv_names(cfg.num_layers)
    caches = tuple(TensorSpec(n, cache_shape(cfg, plan), "float32") for n in names)
    sigs = [
        Signature(
            name,
            fn,
            (TensorSpec("tokens", (1, t), "int32"), TensorSpec("input_pos", (t,), "int32"), *caches),
            ("logits", *names),
        )
        for name, t in plan.signatures().items()
    ]
    return weights, sigs


def check_float_llm(model) -> None:
    for _, (name,), _ in deployed_linears(model.llm):
        raise ValueError(
            f"{name}: a deployed (integer) linear has no float TFLite weight: convert "
            "`litert_w8.float_twin(model)` and patch our codes in (`deployed_for_tflite`)"
        )


def deployed_for_tflite(model, quant: str, vision: bool = False, full_range: bool = False):
    """(the model to convert, our int8 weights to write into the converted LLM): a deployed
    model's W8 codes and steps are kept (litert_w8; full_range: -128 codes allowed); a float model
    converts as it is."""
    weights = int8_weights(model, full_range)
    if not weights:
        return model, []
    if quant != "int8":
        raise ValueError(
            f"--quant {quant!r}: a deployed model exports with --quant int8 (its W8 codes and "
            "steps kept as the int8 weights)"
        )
    outside = [n for _, (n,), _ in deployed_linears(model) if not n.startswith("llm/")]
    if vision and outside:
        raise Int8MappingError(
            f"{outside[0]}: deployed linears outside the LLM are not exported (bundle the vision "
            "tower of a float checkpoint, or leave out --vision-grid)"
        )
    return float_twin(model), weights


def save_llm(model, plan: SignaturePlan, directory: str | pathlib.Path) -> list[str]:
    """The LLM's prefill/decode SavedModel at `directory` -> its signature names."""
    check_float_llm(model)
    weights, sigs = llm_signatures(separate_layers(model).llm, plan)
    save_signatures(weights, sigs, directory)
    return [s.name for s in sigs]


def llm_tflite(model, plan: SignaturePlan, quant: str = "none") -> bytes:
    """The prefill/decode `.tflite` of an AndesVL model's LLM, float or deployed W8 (holds the
    model while converting: `export_litertlm` releases it first)."""
    model, ours = deployed_for_tflite(model, quant)
    with tempfile.TemporaryDirectory(prefix="litert-savedmodel-") as tmp:
        tflite = convert_saved_model(tmp, save_llm(model, plan, tmp), quant)
    return patch_int8(tflite, ours) if ours else tflite


def export_litertlm(
    checkpoint: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    quant: str = "none",
    prefill_lengths: tuple[int, ...] = DEFAULT_PREFILL,
    context: int = DEFAULT_CONTEXT,
    overwrite: bool = False,
    vision_grid: tuple[int, int] | None = None,
    model_and_tokenizer: tuple | None = None,
    int8_full_range: bool = False,
) -> pathlib.Path:
    """Write `out` (.litertlm). vision_grid (patches high, wide): also bundle the vision encoder
    and adapter for that grid (litert_vision). model_and_tokenizer: an already loaded
    (model, TextTokenizer). int8_full_range: a deployed model's -128 codes are kept (outside
    TFLite's [-127, 127] int8 weight spec) instead of refused."""
    out = pathlib.Path(out)
    if quant not in QUANT_RECIPES:
        raise ValueError(f"--quant {quant!r}: expected one of {sorted(QUANT_RECIPES)}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if out.suffix != ".litertlm":
        raise ValueError(f"{out}: the output name must end in .litertlm")
    plan = SignaturePlan(tuple(prefill_lengths), context)
    model, tokenizer = model_and_tokenizer or load_model(checkpoint)
    if not isinstance(tokenizer, TextTokenizer):
        raise ValueError(f"{checkpoint}: no HF tokenizer to bundle")
    if tokenizer.vocab_size > model.cfg.text.vocab_size:
        raise ValueError(
            f"{checkpoint}: tokenizer has {tokenizer.vocab_size} tokens but text.vocab_size is "
            f"{model.cfg.text.vocab_size}"
        )
    model, ours = deployed_for_tflite(model, quant, vision_grid is not None, int8_full_range)
    vision = None if vision_grid is None else vision_tflites(model, *vision_grid, quant=quant)
    with tempfile.TemporaryDirectory(prefix="litert-savedmodel-") as tmp:
        names = save_llm(model, plan, tmp)
        # The converter holds several copies of the weights: release ours first (0.6B: ~2.5 GB).
        del model, model_and_tokenizer
        gc.collect()
        tflite = convert_saved_model(tmp, names, quant)
    if ours:
        tflite = patch_int8(tflite, ours)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        write_bundle(tmp, tflite, tokenizer, context, vision)
    return out
