"""Chunked prefill pieces shared by the full-cache prefill (`infer.generate`) and the evicting one
(`infer.kv.prefill`): the prompt's embeddings split into chunks, each chunk's positions, and the
hidden state of each row's last prompt token picked out as the chunks pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def split_chunks(embeds: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
    """embeds [b, t, d] -> ([t / chunk, b, chunk, d], chunk indices [t / chunk]) for a lax.scan."""
    b, t, d = embeds.shape
    n_chunks = t // chunk
    per_chunk = embeds.reshape(b, n_chunks, chunk, d).swapaxes(0, 1)
    return per_chunk, jnp.arange(n_chunks, dtype=jnp.int32)


def chunk_positions(c: jax.Array, chunk: int, b: int) -> jax.Array:
    """Positions [b, chunk] of chunk c."""
    return jnp.broadcast_to(c * chunk + jnp.arange(chunk, dtype=jnp.int32), (b, chunk))


def keep_last_hidden(
    last: jax.Array, hidden: jax.Array, lengths: jax.Array, c: jax.Array, chunk: int
) -> jax.Array:
    """last [b, d] with the rows whose last prompt token (lengths - 1) falls in chunk c replaced by
    that token's hidden state (hidden [b, chunk, d])."""
    offset = lengths - 1 - c * chunk
    inside = (offset >= 0) & (offset < chunk)
    picked = jnp.take_along_axis(hidden, jnp.clip(offset, 0, chunk - 1)[:, None, None], 1)
    return jnp.where(inside[:, None], picked[:, 0], last)
