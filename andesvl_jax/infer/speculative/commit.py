"""Keep the accepted path's KV and drop the rest of the tree, without copying the cache.

The verification forward wrote the T tree nodes at slots n .. n + T - 1 of every layer. The
accepted path (root first) moves to slots n .. n + a: per row and layer one [kv, T, hd] slice is
read, its path entries gathered, and written back in place (a `dynamic_update_slice` on the
loop-carried buffer). Slots past the new length hold stale tree entries that no later query sees
(queries see slots up to their own, and the next call overwrites from the new length).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from andesvl_jax.models.kv_cache import KVCache


def _move(buffer: jax.Array, start: jax.Array, path: jax.Array, width: int) -> jax.Array:
    """buffer [b * kv, S, hd]; start [b]; path [b, p] offsets into the `width` slots from start."""
    b = start.shape[0]
    kv, hd = buffer.shape[0] // b, buffer.shape[2]
    for row in range(b):
        block = jax.lax.dynamic_slice(buffer, (row * kv, start[row], 0), (kv, width, hd))
        kept = jnp.take(block, path[row], axis=1)
        buffer = jax.lax.dynamic_update_slice(buffer, kept, (row * kv, start[row], 0))
    return buffer


def commit_path(cache: KVCache, start: jax.Array, path: jax.Array, width: int, lengths) -> KVCache:
    """The cache with each row's path nodes (of the `width` tree slots from `start`) moved to
    slots start .., and `lengths` as the new lengths. Separate-layer caches only."""
    k = tuple(_move(layer, start, path, width) for layer in cache.k)
    v = tuple(_move(layer, start, path, width) for layer in cache.v)
    return KVCache(k, v, lengths)
