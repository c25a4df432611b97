"""Chunked prefill pieces shared by the full-cache prefill (`infer.generate`), the evicting one
(`infer.kv.prefill`) and the speculative one (`infer.speculative.decode`): the prompts checked and
padded to a whole number of chunks, the embeddings split into chunks, each chunk's positions, and
the hidden state of each row's last prompt token picked out as the chunks pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def bucket(n: int, multiple: int) -> int:
    """Smallest multiple of `multiple` times a power of two that holds n (few distinct shapes)."""
    size = multiple
    while size < n:
        size *= 2
    return size


def padded_prompts(input_ids, prompt_lengths, image_flags, prefill_chunk: int, pad_id: int):
    """Right-padded prompts [b, t] -> (ids [b, t'] with t' a multiple of the chunk, lengths [b],
    image flags padded alike or None, the chunk: `prefill_chunk`, shrunk to the bucket of short
    prompts). A row without tokens is an error."""
    input_ids = np.asarray(input_ids, np.int32)
    lengths = np.asarray(prompt_lengths, np.int32)
    if lengths.min() < 1:
        raise ValueError("every prompt needs at least one token")
    t = input_ids.shape[1]
    chunk = min(prefill_chunk, bucket(t, 16))
    padded = bucket(t, chunk)
    if padded != t:
        input_ids = np.pad(input_ids, ((0, 0), (0, padded - t)), constant_values=pad_id)
        if image_flags is not None:
            image_flags = np.pad(np.asarray(image_flags), ((0, 0), (0, padded - t)))
    return input_ids, lengths, image_flags, chunk


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
