"""AdaKV (Feng et al. 2024): one layer budget shared across the KV heads by score.

SnapKV scores; every head first keeps its top alpha x budget (the safeguard), then the layer's
kv_heads x budget slots go to the highest scores over all heads of the row. Eviction is physical,
so a head's buffer must hold the most any head can get: at most `head_share` x the budget per head
(kvpress's AdaKV masks instead and frees nothing). A head over that cap keeps its top `cap` and the
budget it could not take is left unused.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from andesvl_jax.infer.kv.policy import register
from andesvl_jax.infer.kv.snapkv import SnapKV


def _rank(x, axis=-1):
    """Descending rank of each element along `axis` (0 = largest; ties by index)."""
    return jnp.argsort(jnp.argsort(-x, axis=axis, stable=True), axis=axis, stable=True)


@register
@dataclasses.dataclass(frozen=True)
class AdaKV(SnapKV):
    alpha: float = 0.2
    head_share: float = 2.0
    name = "adakv"

    def validate(self):
        if not 0 <= self.alpha <= 1 or self.head_share < 1:
            raise ValueError(
                f"adakv: alpha {self.alpha} must be in [0, 1] and head_share {self.head_share} >= 1"
            )
        return super().validate()

    def head_capacity(self, layer_cap):
        return math.ceil(layer_cap * self.head_share)

    def head_targets(self, scores, protected, valid, target, cap):
        b, kv, s = scores.shape
        big = jnp.float32(3e38)
        score = jnp.where(protected, big, jnp.where(valid, scores, -jnp.inf))
        safe = (target * self.alpha).astype(jnp.int32)  # kvpress: int(n_kept * alpha)
        score = jnp.where(_rank(score) < safe[:, None, None], big, score)
        chosen = (_rank(score.reshape(b, kv * s)) < (kv * target)[:, None]).reshape(b, kv, s)
        return jnp.minimum(jnp.sum(chosen & valid, axis=-1), cap).astype(jnp.int32)
