"""Bit-plane packing of integer codes into uint32 words along the input (K) axis (docs/formats.md).

A b-bit code is split into planes of power-of-two widths, low bits first (3 = 2 + 1), so that every
plane packs a whole number of codes per 32-bit word and 3-bit weights cost exactly 3 bits. Within a
plane, word r of column n holds codes k = r*c .. r*c + c-1 (c = 32 / width), code r*c + i in bits
[i*width, (i+1)*width). These functions are used by the packers, the references and — on tiles —
inside the Pallas kernels, so a format has exactly one decoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# bits -> plane widths, low bits first.
PLANE_WIDTHS: dict[int, tuple[int, ...]] = {8: (8,), 4: (4,), 3: (2, 1), 2: (2,), 1: (1,)}


def plane_widths(bits: int) -> tuple[int, ...]:
    if bits not in PLANE_WIDTHS:
        raise ValueError(f"unsupported bit width {bits}; expected one of {sorted(PLANE_WIDTHS)}")
    return PLANE_WIDTHS[bits]


def codes_per_word(width: int) -> int:
    return 32 // width


def pack_bits(codes: jax.Array, width: int) -> jax.Array:
    """codes: [K, N] ints in [0, 2**width) -> uint32 words [K * width / 32, N]."""
    c = codes_per_word(width)
    k, n = codes.shape
    if k % c:
        raise ValueError(f"{k} rows cannot be packed {c} per word (width {width}); pad K first")
    x = (codes.astype(jnp.uint32) & jnp.uint32((1 << width) - 1)).reshape(k // c, c, n)
    shifts = jnp.arange(c, dtype=jnp.uint32) * jnp.uint32(width)
    # Fields do not overlap, so the sum is the bitwise OR.
    return jnp.sum(x << shifts[None, :, None], axis=1, dtype=jnp.uint32)


def unpack_bits(words: jax.Array, width: int) -> jax.Array:
    """uint32 words [R, N] -> int32 codes [R * 32 / width, N] (inverse of `pack_bits`)."""
    c = codes_per_word(width)
    r, n = words.shape
    shifts = jnp.arange(c, dtype=jnp.uint32) * jnp.uint32(width)
    fields = (words[:, None, :] >> shifts[None, :, None]) & jnp.uint32((1 << width) - 1)
    return fields.reshape(r * c, n).astype(jnp.int32)


def pack_codes(codes: jax.Array, bits: int) -> tuple[jax.Array, ...]:
    """codes: [K, N] in [0, 2**bits) -> one uint32 plane per width in `PLANE_WIDTHS[bits]`."""
    planes, offset = [], 0
    codes = codes.astype(jnp.int32)
    for width in plane_widths(bits):
        planes.append(pack_bits((codes >> offset) & ((1 << width) - 1), width))
        offset += width
    return tuple(planes)


def unpack_codes(planes: tuple[jax.Array, ...] | list[jax.Array], bits: int) -> jax.Array:
    """Planes from `pack_codes` (or row tiles of them covering the same K range) -> int32 [K, N]."""
    codes, offset = None, 0
    for plane, width in zip(planes, plane_widths(bits), strict=True):
        part = unpack_bits(plane, width) << offset
        codes = part if codes is None else codes | part
        offset += width
    return codes
