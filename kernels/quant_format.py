"""Group-quantised weights (W8/W4/W3/W2, group 32/64/128, optional zero points): the `PackedWeight`
container, the quantiser and the reference dequantiser. Layout: docs/formats.md §1.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from andesvl_jax.kernels._common import pad_axis, round_up
from andesvl_jax.kernels.packing import codes_per_word, pack_codes, plane_widths, unpack_codes

GROUP_SIZES = (32, 64, 128)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedWeight:
    """W [K, N] (in, out features) as `bits`-bit codes q with w = (q - z) * s per group of K rows.

    planes: uint32 [K_pad * width / 32, N] per plane width (packing.PLANE_WIDTHS[bits]);
    scales: [K_pad / group, N] float (any float dtype; fp16 is what BPW counts);
    zeros: uint8 [K_pad / group, N] zero-point codes, or None for symmetric (z = 2**(bits-1)).
    K_pad = K rounded up to a multiple of group_size; the padding rows are zero weights.
    """

    planes: tuple[jax.Array, ...]
    scales: jax.Array
    zeros: jax.Array | None
    bits: int = dataclasses.field(metadata=dict(static=True))
    group_size: int = dataclasses.field(metadata=dict(static=True))
    in_features: int = dataclasses.field(metadata=dict(static=True))

    @property
    def out_features(self) -> int:
        return self.scales.shape[1]

    @property
    def k_padded(self) -> int:
        return self.scales.shape[0] * self.group_size

    def bits_per_weight(self) -> float:
        """Stored bits (codes, scales, zero points) per logical weight, padding included."""
        stored = (
            sum(p.size * 32 for p in self.planes)
            + self.scales.size * self.scales.dtype.itemsize * 8
        )
        if self.zeros is not None:
            stored += self.zeros.size * 8
        return stored / (self.in_features * self.out_features)


def _check(bits: int, group_size: int) -> None:
    plane_widths(bits)
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size {group_size} unsupported; expected one of {GROUP_SIZES}")


def quantize_weight(
    w: jax.Array,
    bits: int,
    group_size: int = 128,
    zero_point: bool = False,
    scale_dtype=jnp.float16,
) -> PackedWeight:
    """Round-to-nearest group quantisation of w: [K, N] (absmax, or min/max with zeros)."""
    _check(bits, group_size)
    k, n = w.shape
    kp = round_up(k, group_size)
    wg = pad_axis(w.astype(jnp.float32), 0, kp).reshape(kp // group_size, group_size, n)
    qmax = (1 << bits) - 1
    if zero_point:
        lo, hi = jnp.minimum(wg.min(1), 0.0), jnp.maximum(wg.max(1), 0.0)
        scales = ((hi - lo) / qmax).astype(scale_dtype)
        s = jnp.where(scales == 0, 1.0, scales.astype(jnp.float32))
        zeros = jnp.clip(jnp.round(-lo / s), 0, qmax)
    else:
        half = 1 << (bits - 1)
        scales = (jnp.abs(wg).max(1) / max(half - 1, 1)).astype(scale_dtype)
        s = jnp.where(scales == 0, 1.0, scales.astype(jnp.float32))
        zeros = jnp.full_like(s, half)
    codes = jnp.clip(jnp.round(wg / s[:, None, :]) + zeros[:, None, :], 0, qmax).reshape(kp, n)
    return pack_weight(
        codes, scales, zeros.astype(jnp.uint8) if zero_point else None, bits, group_size, k
    )


def pack_weight(
    codes: jax.Array,
    scales: jax.Array,
    zeros: jax.Array | None,
    bits: int,
    group_size: int,
    in_features: int,
) -> PackedWeight:
    """Pack integer codes [K_pad, N] (K_pad % group_size == 0) with scales/zeros."""
    _check(bits, group_size)
    if codes.shape[0] % group_size or codes.shape[0] // group_size != scales.shape[0]:
        raise ValueError(
            f"codes {codes.shape} do not match scales {scales.shape} at group {group_size}"
        )
    assert all(group_size % codes_per_word(wd) == 0 for wd in plane_widths(bits))
    return PackedWeight(pack_codes(codes, bits), scales, zeros, bits, group_size, in_features)


def unpack_weight_codes(pw: PackedWeight) -> jax.Array:
    """int32 codes [K_pad, N] (inverse of `pack_weight`)."""
    return unpack_codes(pw.planes, pw.bits)


def expand_groups(per_group: jax.Array, group_size: int) -> jax.Array:
    """[G, N] per-group values -> [G * group_size, N], rows repeated (no gather)."""
    g, n = per_group.shape
    return jnp.broadcast_to(per_group[:, None, :], (g, group_size, n)).reshape(g * group_size, n)


def dequantize_tile(planes, scales, zeros, bits: int, group_size: int) -> jax.Array:
    """float32 [rows, N] from row tiles of planes/scales/zeros (rows % group_size == 0)."""
    codes = unpack_codes(planes, bits).astype(jnp.float32)
    z = (
        float(1 << (bits - 1))
        if zeros is None
        else expand_groups(zeros.astype(jnp.float32), group_size)
    )
    return (codes - z) * expand_groups(scales.astype(jnp.float32), group_size)


def dequantize_weight(pw: PackedWeight) -> jax.Array:
    """Reference decode: float32 [K, N]."""
    return dequantize_tile(pw.planes, pw.scales, pw.zeros, pw.bits, pw.group_size)[: pw.in_features]
