"""Learned absolute position table resized to each image's patch grid, per patch, inside jit.

The official code resizes the G x G table with PyTorch `F.interpolate` per image. Here every patch
gets its own interpolation weights over the G source rows and G source columns (computed from its
(row, col) and its image's grid size), so images of any size share one compiled program. Weights are
dense over G (small: 16 or 32) which makes both kernels exact reproductions of PyTorch's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# coord [...] (output index), out_size [...] (output length), table size G -> weights [..., G]
Interpolation = Callable[[jax.Array, jax.Array, int], jax.Array]
INTERPOLATIONS: dict[str, Interpolation] = {}


def _register(name: str):
    def wrap(fn: Interpolation) -> Interpolation:
        INTERPOLATIONS[name] = fn
        return fn

    return wrap


def _keys_cubic(x: jax.Array, a: float = -0.75) -> jax.Array:
    """Keys cubic convolution kernel (PyTorch's A = -0.75)."""
    x = jnp.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return jnp.where(x <= 1.0, near, jnp.where(x < 2.0, far, 0.0))


@_register("bicubic")
def bicubic_weights(coord: jax.Array, out_size: jax.Array, g: int) -> jax.Array:
    """PyTorch bicubic, align_corners=False, 4 taps clamped to the border, no anti-aliasing."""
    scale = g / out_size.astype(jnp.float32)
    src = (coord.astype(jnp.float32) + 0.5) * scale - 0.5
    base = jnp.floor(src)
    frac = src - base
    taps = jnp.arange(-1, 3, dtype=jnp.float32)  # offsets of the 4 taps from floor(src)
    tap_weights = _keys_cubic(frac[..., None] - taps)  # [..., 4]
    tap_index = jnp.clip(base[..., None] + taps, 0, g - 1).astype(jnp.int32)
    one_hot = jax.nn.one_hot(tap_index, g, dtype=jnp.float32)  # [..., 4, G]
    return jnp.einsum("...t,...tg->...g", tap_weights, one_hot)


@_register("bilinear_aa")
def bilinear_antialias_weights(coord: jax.Array, out_size: jax.Array, g: int) -> jax.Array:
    """PyTorch bilinear with antialias=True, align_corners=False (what HF SigLIP2 uses)."""
    scale = g / out_size.astype(jnp.float32)
    support = jnp.maximum(scale, 1.0)
    inv = jnp.where(scale >= 1.0, 1.0 / scale, 1.0)
    center = scale * (coord.astype(jnp.float32) + 0.5)
    # PyTorch truncates towards zero (C++ int cast) before clamping to the table.
    lo = jnp.maximum(jnp.trunc(center - support + 0.5), 0.0)
    hi = jnp.minimum(jnp.trunc(center + support + 0.5), float(g))
    j = jnp.arange(g, dtype=jnp.float32)
    w = jnp.maximum(0.0, 1.0 - jnp.abs((j - center[..., None] + 0.5) * inv[..., None]))
    w = jnp.where((j >= lo[..., None]) & (j < hi[..., None]), w, 0.0)
    total = jnp.sum(w, axis=-1, keepdims=True)
    return w / jnp.where(total == 0.0, 1.0, total)


def resized_position_embedding(
    table: jax.Array,
    rows: jax.Array,
    cols: jax.Array,
    grid_h: jax.Array,
    grid_w: jax.Array,
    method: str,
) -> jax.Array:
    """table: [G*G, d] (row-major y*G + x); rows, cols, grid_h, grid_w: [b, n] -> [b, n, d].

    Padding patches (grid size 0) get zeros.
    """
    if method not in INTERPOLATIONS:
        raise ValueError(
            f"unknown position interpolation {method!r}; expected one of {sorted(INTERPOLATIONS)}"
        )
    g = round(table.shape[0] ** 0.5)
    if g * g != table.shape[0]:
        raise ValueError(f"position table has {table.shape[0]} rows, not a square grid")
    interp = INTERPOLATIONS[method]
    valid = (grid_h > 0) & (grid_w > 0)
    wy = interp(rows, jnp.maximum(grid_h, 1), g)  # [b, n, G]
    wx = interp(cols, jnp.maximum(grid_w, 1), g)
    weights = (wy[..., :, None] * wx[..., None, :]).reshape(*rows.shape, g * g)
    weights = jnp.where(valid[..., None], weights, 0.0)
    return jnp.matmul(weights, table.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
