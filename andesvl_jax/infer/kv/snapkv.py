"""SnapKV (Li et al. 2024): the last `window` prompt queries score the keys before them.

Per query head: the mean over the window queries of their softmax weights on each prefix key,
1-D average pooled (kernel 5, zero padding); the g query heads of a KV head are averaged (GQA, as
kvpress); each KV head keeps its top-(budget - window) prefix keys plus the window. Defaults are
kvpress's `SnapKVPress` (window 64, kernel 5).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from andesvl_jax.infer.kv.policy import KVPolicy, pool1d, register


def window_scores(policy: KVPolicy, acc: jax.Array, pos: jax.Array, seen: jax.Array) -> jax.Array:
    """Pooled window attention per query head [b * kv, g, S]; 0 outside the prefix (so pooling
    near the window sees zero padding, as kvpress pools the prefix alone)."""
    raw = jnp.where(policy.prefix(pos, seen)[:, None, :], acc[0], 0.0)
    return pool1d(raw, policy.kernel)


@register
@dataclasses.dataclass(frozen=True)
class SnapKV(KVPolicy):
    window: int = 64
    kernel: int = 5
    name = "snapkv"

    def scores(self, acc, pos, seen):
        return jnp.mean(window_scores(self, acc, pos, seen), axis=1)

    def carry(self, acc, scores):
        return jnp.zeros_like(acc)  # every compaction observes a fresh window
