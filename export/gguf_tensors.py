"""Our Qwen3 LLM -> GGUF tensors (llama.cpp arch `qwen3`), float or from our deployed integer codes.

Names come from two tables that already exist: the checkpoint key map (convert/keymaps.py: our
parameter -> the HF Qwen3 tensor, with its save transform) and gguf-py's own HF -> GGUF table
(`gguf.get_tensor_name_map`), so import, export and llama.cpp agree on one naming. Arrays are numpy
`(out, in)` (ggml's ne[0] = in). Norm vectors stay f32 (llama.cpp's convention); 2-D weights take
the requested float/quant type (`gguf.quants`). A deployed linear (compress/deploy.py) is written
from its integer codes and fp16 steps unchanged (gguf_quant.py), whatever the requested type.
"""

from __future__ import annotations

import dataclasses

import gguf
import jax
import numpy as np
from andesvl_jax.export.gguf_quant import deployed_blocks
from flax import nnx

from andesvl_jax.compress.deploy import DeployedLinear, layer_value
from andesvl_jax.config import AndesVLConfig
from andesvl_jax.convert.keymaps import qwen3_rules
from andesvl_jax.models.qwen3 import Qwen3

Q = gguf.GGMLQuantizationType
# --quant name -> GGML type of the 2-D float weights
FLOAT_TYPES = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}


class ArchitectureError(ValueError):
    """The model has a part llama.cpp's `qwen3` architecture cannot express (names the field)."""


@dataclasses.dataclass(frozen=True)
class GGUFTensor:
    name: str
    data: np.ndarray  # float array, or uint8 raw blocks [rows, bytes] when dtype is quantized
    dtype: Q


def llm_of(model):
    """The Qwen3 LLM of an AndesVL model (or the model itself when it is a Qwen3)."""
    return getattr(model, "llm", model)


def _encode(name: str, w: np.ndarray, dtype: Q) -> GGUFTensor:
    w = np.ascontiguousarray(w, np.float32)
    if w.ndim == 1 or dtype == Q.F32:
        return GGUFTensor(name, w, Q.F32)
    if dtype == Q.F16:
        return GGUFTensor(name, w.astype(np.float16), Q.F16)
    block = gguf.GGML_QUANT_SIZES[dtype][0]
    if w.shape[-1] % block:
        raise ArchitectureError(
            f"{name}: row length {w.shape[-1]} is not a multiple of {dtype.name}'s block {block}"
        )
    return GGUFTensor(name, gguf.quants.quantize(w, dtype), dtype)


def _modules(llm) -> dict[tuple, nnx.Module]:
    return {tuple(p): m for p, m in nnx.iter_modules(llm)}


def llm_tensors(model, quant: str = "f32") -> list[GGUFTensor]:
    """Every GGUF tensor of the model's LLM, in GGUF names (see the module docstring)."""
    if quant not in FLOAT_TYPES:
        raise ValueError(f"--quant {quant!r}: GGUF types written here are {sorted(FLOAT_TYPES)}")
    llm = llm_of(model)
    if not isinstance(llm, Qwen3):
        raise ArchitectureError(
            f"{type(model).__name__}: no Qwen3 language model (text_config) to write as GGUF arch "
            "qwen3 (a vision-only checkpoint has no llama.cpp LLM form)"
        )
    text = llm.cfg
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, text.num_layers)
    flat = dict(nnx.to_flat_state(nnx.state(llm)))
    modules = _modules(llm)
    out = []
    for rule in qwen3_rules(AndesVLConfig(text=text), "", ""):
        (ours,), (theirs,) = rule.ours, rule.theirs
        for i in range(text.num_layers) if rule.tower else [None]:
            path = tuple(int(p) if p.isdigit() else p for p in ours.format(i=i).split("."))
            hf = theirs.format(i=i)
            name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ArchitectureError(f"{hf}: no llama.cpp qwen3 tensor for it")
            deployed = modules.get(path[:-1])
            if isinstance(deployed, DeployedLinear):
                data, dtype = deployed_blocks(deployed, where=".".join(map(str, path[:-1])))
                out.append(GGUFTensor(name, data, dtype))
                continue
            value = np.asarray(jax.device_get(layer_value(flat, path)), np.float32)
            if getattr(modules.get(path[:-1]), "out_in", False):  # infer.engine.decoding_layout
                value = value.T  # stored [out, in]; the key map's save takes [in, out]
            (saved,) = rule.save(value)
            out.append(_encode(name, saved, FLOAT_TYPES[quant]))
    return out


def add_llm_hparams(writer: gguf.GGUFWriter, text, context_length: int | None = None) -> None:
    """The `qwen3.*` hyper-parameters llama.cpp reads for this TextConfig."""
    writer.add_context_length(context_length or text.max_position)
    writer.add_embedding_length(text.hidden_size)
    writer.add_block_count(text.num_layers)
    writer.add_feed_forward_length(text.intermediate_size)
    writer.add_head_count(text.num_heads)
    writer.add_head_count_kv(text.num_kv_heads)
    writer.add_key_length(text.head_dim)
    writer.add_value_length(text.head_dim)
    writer.add_rope_freq_base(text.rope_theta)
    writer.add_layer_norm_rms_eps(text.norm_eps)
