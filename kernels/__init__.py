"""Pallas kernels with pure-jnp references and an impl = "auto" | "xla" | "pallas" dispatcher.

Import as `andesvl_jax.kernels` (never a bare `kernels`). Importing registers the "pallas" and
"auto" attention implementations with `andesvl_jax.models.attention`. On CPU, Pallas kernels run in
interpret mode (see `_common.use_interpret`; `ANDESVL_PALLAS_INTERPRET=1` forces it elsewhere).
Tiling: docs/kernels.md; packed weight formats: docs/formats.md.
"""

from __future__ import annotations

import jax
from andesvl_jax.kernels._common import set_interpret, use_interpret
from andesvl_jax.kernels.attention import packed_attention
from andesvl_jax.kernels.dispatch import (
    KERNELS,
    get_kernel,
    lora_matmul,
    quantized_matmul,
    quantized_matmul_a8,
    resolve_impl,
)
from andesvl_jax.kernels.lora_matmul import lora_matmul_pallas, lora_matmul_ref
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

from andesvl_jax.models.attention import ATTENTION_IMPLS, register_attention

# The Pallas flash kernel takes `xla_attention`'s arguments (plus tile sizes with defaults).
register_attention("pallas")(packed_attention)


@register_attention("auto")
def auto_attention(q: jax.Array, k: jax.Array, v: jax.Array, **kwargs) -> jax.Array:
    """Pallas on GPU, the XLA reference on CPU and (until the kernel meets Mosaic's tiling) TPU."""
    return ATTENTION_IMPLS[resolve_impl("auto", "attention")](q, k, v, **kwargs)


__all__ = [
    "KERNELS",
    "PackedWeight",
    "SparseWeight",
    "auto_attention",
    "densify_weight",
    "dequantize_weight",
    "get_kernel",
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
    "resolve_impl",
    "set_interpret",
    "sparsify_weight",
    "use_interpret",
]
