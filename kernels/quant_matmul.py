"""Low-bit weight matmul (W8/W4/W3/W2 x A16, and A8 per-token scales): Pallas kernel + reference.

Weights are `PackedWeight`s (docs/formats.md §1), decoded tile by tile inside `decode_matmul`.
Numerics (kernel and reference alike): the weight is dequantised in float32, cast to the compute
dtype (x's dtype for A16), multiplied with float32 accumulation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from andesvl_jax.kernels.decode_matmul import decode_matmul
from andesvl_jax.kernels.packing import codes_per_word, plane_widths
from andesvl_jax.kernels.quant_format import PackedWeight, dequantize_tile, dequantize_weight


def _operands(pw: PackedWeight):
    """(arrays, K rows per array row, decode) of a PackedWeight for `decode_matmul`."""
    widths = plane_widths(pw.bits)
    arrays = [*pw.planes, pw.scales] + ([] if pw.zeros is None else [pw.zeros])
    k_per_row = [codes_per_word(w) for w in widths] + [pw.group_size] * (len(arrays) - len(widths))
    n_planes = len(widths)

    def decode(*tiles):
        planes, rest = tiles[:n_planes], tiles[n_planes:]
        zeros = rest[1] if len(rest) > 1 else None
        return dequantize_tile(planes, rest[0], zeros, pw.bits, pw.group_size)

    return arrays, k_per_row, decode


@functools.partial(jax.jit, static_argnames=("block_m", "block_n", "block_k", "interpret"))
def quantized_matmul_pallas(
    x: jax.Array, pw: PackedWeight, *, block_m=None, block_n=None, block_k=None, interpret=None
) -> jax.Array:
    """x: [M, K] float -> [M, N] x.dtype, W decoded inside the kernel."""
    arrays, k_per_row, decode = _operands(pw)
    return decode_matmul(
        x,
        None,
        arrays,
        k_per_row,
        decode,
        in_features=pw.in_features,
        compute_dtype=x.dtype,
        out_dtype=x.dtype,
        block_m=block_m,
        block_n=block_n,
        block_k=block_k,
        interpret=interpret,
    )


def quantized_matmul_ref(x: jax.Array, pw: PackedWeight) -> jax.Array:
    """Pure-jnp reference of `quantized_matmul_pallas`."""
    w = dequantize_weight(pw).astype(x.dtype)
    return jnp.dot(x, w, preferred_element_type=jnp.float32).astype(x.dtype)


def quantize_activations(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Symmetric per-token int8: x [M, K] -> (int8 [M, K], float32 scale [M]), x ~ q * scale."""
    amax = jnp.max(jnp.abs(x.astype(jnp.float32)), axis=-1)
    scale = jnp.where(amax == 0, 1.0, amax / 127.0)
    q = jnp.clip(jnp.round(x.astype(jnp.float32) / scale[:, None]), -127, 127).astype(jnp.int8)
    return q, scale


@functools.partial(
    jax.jit,
    static_argnames=("compute_dtype", "out_dtype", "block_m", "block_n", "block_k", "interpret"),
)
def quantized_matmul_a8_pallas(
    x_q: jax.Array,
    x_scale: jax.Array,
    pw: PackedWeight,
    *,
    compute_dtype=jnp.bfloat16,
    out_dtype=jnp.bfloat16,
    block_m=None,
    block_n=None,
    block_k=None,
    interpret=None,
) -> jax.Array:
    """x_q: int8 [M, K], x_scale: [M] -> [M, N]: (x_q @ W) * x_scale (int8 is exact in bf16)."""
    arrays, k_per_row, decode = _operands(pw)
    return decode_matmul(
        x_q,
        x_scale,
        arrays,
        k_per_row,
        decode,
        in_features=pw.in_features,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        block_m=block_m,
        block_n=block_n,
        block_k=block_k,
        interpret=interpret,
    )


def quantized_matmul_a8_ref(
    x_q: jax.Array,
    x_scale: jax.Array,
    pw: PackedWeight,
    *,
    compute_dtype=jnp.bfloat16,
    out_dtype=jnp.bfloat16,
) -> jax.Array:
    """Pure-jnp reference of `quantized_matmul_a8_pallas`."""
    w = dequantize_weight(pw).astype(compute_dtype)
    acc = jnp.dot(x_q.astype(compute_dtype), w, preferred_element_type=jnp.float32)
    return (acc * x_scale.astype(jnp.float32)[:, None]).astype(out_dtype)
