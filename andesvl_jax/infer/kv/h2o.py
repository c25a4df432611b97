"""H2O (Zhang et al. 2023): heavy hitters by attention accumulated over every prompt query.

Each key's score is the sum of the softmax weights every (valid) query gave it, summed over the g
query heads of its KV head, accumulated across prefill chunks (and carried through compactions);
each KV head keeps its top-(budget - window) plus the `window` most recent tokens (H2O's "recent"
part). Scores favour early tokens, which more queries see: that is H2O's known bias.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from andesvl_jax.infer.kv.policy import KVPolicy, register


@register
@dataclasses.dataclass(frozen=True)
class H2O(KVPolicy):
    window: int = 32
    name = "h2o"

    def observe(self, q_pos, q_valid, seen):
        return q_valid[None].astype(jnp.float32)

    def scores(self, acc, pos, seen):
        return jnp.where(pos >= 0, jnp.sum(acc[0], axis=1), 0.0)
