"""Pallas kernels with pure-jnp references and an impl = "auto" | "xla" | "pallas" dispatcher.

Import as `andesvl_jax.kernels` (never a bare `kernels`). Kernels sit below the models in the
layering (they import nothing of `andesvl_jax` but themselves); the models call
`dot_product_attention`, whose registry (`dispatch.KERNELS`) is the only attention registry ("xla"
reference, "blockwise" pure-XLA flash, "cudnn", "pallas"; "auto" picks only validated ones). On CPU,
Pallas kernels run in interpret mode (see `_common.use_interpret`; `ANDESVL_PALLAS_INTERPRET=1` forces it elsewhere).
Tiling: docs/kernels.md; packed weight formats: docs/formats.md.
"""

from __future__ import annotations

from andesvl_jax.kernels._common import set_interpret, use_interpret
from andesvl_jax.kernels.attention import packed_attention
from andesvl_jax.kernels.attention_blockwise import blockwise_attention, blockwise_attention_stats
from andesvl_jax.kernels.attention_cudnn import cudnn_attention
from andesvl_jax.kernels.attention_ref import attention_mask, xla_attention
from andesvl_jax.kernels.dispatch import (
    KERNELS,
    VALIDATED,
    dot_product_attention,
    get_kernel,
    is_validated,
    lora_delta,
    lora_matmul,
    quantized_matmul,
    quantized_matmul_a8,
    register_kernel,
    resolve_attention,
    resolve_impl,
)
from andesvl_jax.kernels.lora_matmul import lora_delta_ref, lora_matmul_pallas, lora_matmul_ref
from andesvl_jax.kernels.quant_format import (
    PackedWeight,
    dequantize_weight,
    pack_weight,
    quantize_weight,
)
from andesvl_jax.kernels.quant_matmul import quantize_activations
from andesvl_jax.kernels.sparse_format import (
    SparseWeight,
    densify_weight,
    pack_sparse,
    sparsify_weight,
)

__all__ = [
    "KERNELS",
    "PackedWeight",
    "SparseWeight",
    "VALIDATED",
    "attention_mask",
    "blockwise_attention",
    "blockwise_attention_stats",
    "cudnn_attention",
    "densify_weight",
    "dequantize_weight",
    "dot_product_attention",
    "dequantize_weight",
    "get_kernel",
    "is_validated",
    "lora_delta",
    "lora_delta_ref",
    "lora_matmul",
    "lora_matmul_pallas",
    "lora_matmul_ref",
    "pack_sparse",
    "pack_weight",
    "packed_attention",
    "quantize_activations",
    "quantize_weight",
    "quantized_matmul",
    "quantized_matmul_a8",
    "register_kernel",
    "resolve_attention",
    "resolve_impl",
    "set_interpret",
    "sparsify_weight",
    "use_interpret",
    "xla_attention",
]
