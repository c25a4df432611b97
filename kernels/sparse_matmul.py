"""1:4-sparse 4-bit weight matmul (the <= 1.8 bits-per-weight format): Pallas kernel + reference.

Weights are `SparseWeight`s (docs/formats.md §2); each K tile is expanded to dense inside
`decode_matmul` (slot == index ? value : 0), then multiplied with float32 accumulation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from andesvl_jax.kernels.decode_matmul import decode_matmul
from andesvl_jax.kernels.packing import codes_per_word
from andesvl_jax.kernels.sparse_format import (
    BLOCK,
    INDEX_BITS,
    VALUE_BITS,
    SparseWeight,
    decode_sparse_tile,
    densify_weight,
)


@functools.partial(jax.jit, static_argnames=("block_m", "block_n", "block_k", "interpret"))
def sparse_matmul_pallas(
    x: jax.Array, sw: SparseWeight, *, block_m=None, block_n=None, block_k=None, interpret=None
) -> jax.Array:
    """x: [M, K] float -> [M, N] x.dtype, the sparse weight decoded inside the kernel."""
    k_per_row = [
        BLOCK * codes_per_word(INDEX_BITS),
        BLOCK * codes_per_word(VALUE_BITS),
        sw.group_size,
    ]
    decode = functools.partial(decode_sparse_tile, group_size=sw.group_size)
    return decode_matmul(
        x,
        None,
        [sw.index, sw.values, sw.scales],
        k_per_row,
        decode,
        in_features=sw.in_features,
        compute_dtype=x.dtype,
        out_dtype=x.dtype,
        block_m=block_m,
        block_n=block_n,
        block_k=block_k,
        interpret=interpret,
    )


def sparse_matmul_ref(x: jax.Array, sw: SparseWeight) -> jax.Array:
    """Pure-jnp reference of `sparse_matmul_pallas`."""
    w = densify_weight(sw).astype(x.dtype)
    return jnp.dot(x, w, preferred_element_type=jnp.float32).astype(x.dtype)
