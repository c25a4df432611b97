"""75 %-sparse 4-bit weights in 1:4 structure (one kept weight per 4 along K): `SparseWeight`, the
magnitude sparsifier and the reference decoder. Layout and the bits-per-weight arithmetic:
docs/formats.md §2 (2-bit index + 4-bit value per 4 weights = 1.5 bits, + fp16 scales per group).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from andesvl_jax.kernels._common import pad_axis, round_up
from andesvl_jax.kernels.packing import pack_bits, unpack_bits
from andesvl_jax.kernels.quant_format import expand_groups

BLOCK = 4  # dense weights per kept weight
INDEX_BITS, VALUE_BITS = 2, 4
VALUE_ZERO = 1 << (VALUE_BITS - 1)  # symmetric: w = (v - 8) * s
SPARSE_GROUP_SIZES = (64, 128)  # K_pad/4 must fill whole 2-bit index words (16 per word)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseWeight:
    """W [K, N] with one kept weight per block of 4 consecutive K rows.

    index: uint32 [K_pad / 64, N]: 2-bit position (0..3) of the kept weight in each block;
    values: uint32 [K_pad / 32, N]: 4-bit code v of the kept weight, w = (v - 8) * scale;
    scales: [K_pad / group, N] float, one per group of `group_size` dense K rows.
    Both planes use `packing.pack_bits` over the block axis (K_pad / 4 rows).
    """

    index: jax.Array
    values: jax.Array
    scales: jax.Array
    group_size: int = dataclasses.field(metadata=dict(static=True))
    in_features: int = dataclasses.field(metadata=dict(static=True))

    @property
    def out_features(self) -> int:
        return self.scales.shape[1]

    @property
    def k_padded(self) -> int:
        return self.scales.shape[0] * self.group_size

    def bits_per_weight(self) -> float:
        stored = (
            self.index.size + self.values.size
        ) * 32 + self.scales.size * self.scales.dtype.itemsize * 8
        return stored / (self.in_features * self.out_features)


def pack_sparse(
    index_codes: jax.Array,
    value_codes: jax.Array,
    scales: jax.Array,
    group_size: int,
    in_features: int,
) -> SparseWeight:
    """index_codes, value_codes: int [K_pad / 4, N]; scales [K_pad / group_size, N]."""
    if group_size not in SPARSE_GROUP_SIZES:
        raise ValueError(
            f"sparse group_size {group_size} unsupported; expected one of {SPARSE_GROUP_SIZES}"
        )
    if index_codes.shape[0] * BLOCK != scales.shape[0] * group_size:
        raise ValueError(
            f"codes {index_codes.shape} do not match scales {scales.shape} at group {group_size}"
        )
    return SparseWeight(
        pack_bits(index_codes, INDEX_BITS),
        pack_bits(value_codes, VALUE_BITS),
        scales,
        group_size,
        in_features,
    )


def unpack_sparse(sw: SparseWeight) -> tuple[jax.Array, jax.Array]:
    """(index_codes, value_codes), each int32 [K_pad / 4, N] (inverse of `pack_sparse`)."""
    return unpack_bits(sw.index, INDEX_BITS), unpack_bits(sw.values, VALUE_BITS)


def sparsify_weight(w: jax.Array, group_size: int = 128, scale_dtype=jnp.float16) -> SparseWeight:
    """Keep the largest-magnitude weight of each 4 along K, quantise to 4 bits (absmax/group)."""
    k, n = w.shape
    kp = round_up(k, group_size)
    blocks = pad_axis(w.astype(jnp.float32), 0, kp).reshape(kp // BLOCK, BLOCK, n)
    index = jnp.argmax(jnp.abs(blocks), axis=1)
    kept = jnp.take_along_axis(blocks, index[:, None, :], axis=1)[:, 0, :]
    per_group = kept.reshape(kp // group_size, group_size // BLOCK, n)
    scales = (jnp.abs(per_group).max(1) / (VALUE_ZERO - 1)).astype(scale_dtype)
    s = jnp.where(scales == 0, 1.0, scales.astype(jnp.float32))
    codes = jnp.clip(jnp.round(per_group / s[:, None, :]) + VALUE_ZERO, 0, 2 * VALUE_ZERO - 1)
    return pack_sparse(index, codes.reshape(kp // BLOCK, n), scales, group_size, k)


def decode_sparse_tile(index, values, scales, group_size: int) -> jax.Array:
    """float32 dense [rows, N] from row tiles of index/values/scales (rows % group == 0)."""
    idx = unpack_bits(index, INDEX_BITS)
    val = (unpack_bits(values, VALUE_BITS) - VALUE_ZERO).astype(jnp.float32)
    r, n = idx.shape
    slot = jax.lax.broadcasted_iota(jnp.int32, (r, BLOCK, n), 1)
    dense = jnp.where(slot == idx[:, None, :], val[:, None, :], 0.0).reshape(r * BLOCK, n)
    return dense * expand_groups(scales.astype(jnp.float32), group_size)


def densify_weight(sw: SparseWeight) -> jax.Array:
    """Reference decode: float32 [K, N]."""
    return decode_sparse_tile(sw.index, sw.values, sw.scales, sw.group_size)[: sw.in_features]
