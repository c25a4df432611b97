"""Rotary position embeddings, rotate-half (GPT-NeoX) convention: 1-D for text, 2-D for vision patches."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def inverse_frequencies(rotary_dim: int, theta: float) -> jax.Array:
    """1 / theta^(2i / rotary_dim) for i < rotary_dim / 2. -> [rotary_dim // 2]."""
    return 1.0 / (theta ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))


def text_angles(positions: jax.Array, head_dim: int, theta: float) -> jax.Array:
    """positions: [b, t] -> angles [b, t, head_dim // 2]."""
    return positions.astype(jnp.float32)[..., None] * inverse_frequencies(head_dim, theta)


def vision_angles(rows: jax.Array, cols: jax.Array, head_dim: int, theta: float) -> jax.Array:
    """2-D RoPE (Qwen2.5-VL style): rows, cols [b, n] -> angles [b, n, head_dim // 2].

    Half the rotary frequencies (head_dim/4 of them, built over head_dim/2) encode the patch row,
    the other half its column.
    """
    inv = inverse_frequencies(head_dim // 2, theta)
    r = rows.astype(jnp.float32)[..., None] * inv
    c = cols.astype(jnp.float32)[..., None] * inv
    return jnp.concatenate([r, c], axis=-1)


def apply_rotary(x: jax.Array, angles: jax.Array) -> jax.Array:
    """x: [b, t, heads, head_dim]; angles: [b, t, head_dim // 2] -> rotated x (same dtype)."""
    emb = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(emb), jnp.sin(emb)
    x32 = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    return (x32 * cos + rotated * sin).astype(x.dtype)
