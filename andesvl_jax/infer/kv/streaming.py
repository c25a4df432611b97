"""StreamingLLM (Xiao et al. 2023): keep the first `sinks` tokens and the most recent ones.

The score is the position itself (newer = higher) with the sinks protected, so each head keeps
sinks + the last (budget - sinks) positions, as kvpress's `StreamingLLMPress` (n_sink 4). No
attention statistics are needed (the observation weights are all zero).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from andesvl_jax.infer.kv.policy import KVPolicy, register


@register
@dataclasses.dataclass(frozen=True)
class StreamingLLM(KVPolicy):
    window: int = 0
    sinks: int = 4
    name = "streaming"

    def observe(self, q_pos, q_valid, seen):
        return jnp.zeros((1, *q_pos.shape), jnp.float32)

    def scores(self, acc, pos, seen):
        return pos.astype(jnp.float32)
