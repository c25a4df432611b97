"""Our LoRA adapters (compress/lora_files.Adapter) -> GGUF LoRA adapters llama.cpp applies at run time.

File: `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, the base's
architecture; per adapted linear `<base tensor>.lora_a` (numpy [r, in]) and `.lora_b` ([out, r]),
f32. llama.cpp scales each delta by user_scale * alpha / r (r = lora_b's rank); alpha = 0 means
user_scale alone. When every module has the same scale * r we write that alpha (PEFT's
lora_alpha); otherwise (per-module ranks with different alpha / r) each module's scale is folded
into its lora_b and alpha = 0, so llama.cpp applies exactly our scale.
Names: our module -> PEFT's Qwen3 module (lora_files.peft_module) -> gguf-py's qwen3 table.
"""

from __future__ import annotations

import pathlib

import gguf
import numpy as np
from andesvl_jax.export.gguf_file import ARCH, finish
from andesvl_jax.export.gguf_tensors import ArchitectureError, llm_of

from andesvl_jax.compress.lora_files import Adapter, check_fits, peft_module


def lora_tensors(adapter: Adapter, num_layers: int) -> tuple[float, dict[str, np.ndarray]]:
    """(alpha, GGUF name -> f32 array) of `adapter` (see the module docstring)."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, num_layers)
    alphas = {round(scale * a.shape[1], 6) for a, _, scale in adapter.factors.values()}
    alpha = alphas.pop() if len(alphas) == 1 else 0.0
    out = {}
    for module, (a, b, scale) in sorted(adapter.factors.items()):
        hf = peft_module(module)
        base = names.get_name(hf)
        if base is None:
            raise ArchitectureError(f"{module} ({hf}): no llama.cpp qwen3 tensor for it")
        fold = 1.0 if alpha else scale
        out[f"{base}.weight.lora_a"] = np.ascontiguousarray(a.T, np.float32)
        out[f"{base}.weight.lora_b"] = np.ascontiguousarray(b.T * fold, np.float32)
    return alpha, out


def write_lora(adapter: Adapter, model, path: str | pathlib.Path, name: str = "") -> None:
    """Write `adapter` (checked against `model`'s LLM) as a GGUF LoRA adapter at `path`."""
    check_fits(adapter, model, where=str(path))
    alpha, tensors = lora_tensors(adapter, llm_of(model).cfg.num_layers)
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(name or pathlib.Path(path).stem)
    for key, arr in tensors.items():
        writer.add_tensor(key, arr)
    finish(writer)
