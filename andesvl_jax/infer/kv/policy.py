"""The eviction policy interface and the registry (name -> policy class).

A policy is a frozen dataclass of settings with four pieces, all traced inside the compiled prefill:

* `observe`: which of a prefill call's queries feed the attention statistics, with what weight
  ([n_obs, b, t]); the attention returns sum over queries of weight x softmax, per query head;
* `accumulate` / `carry`: how those statistics add up across chunks and what survives a compaction;
* `scores`: one score per (row, KV head, slot) from the accumulated statistics (higher = keep);
* budgets: `layer_targets` (host: tokens kept per layer and row, e.g. PyramidKV) and
  `head_targets` (traced: tokens kept per KV head, e.g. AdaKV); the default is one budget for all.

Protected slots (the first `sinks` positions, the last `window` positions seen, vision tokens with
`protect_vision`) are always kept and count against the budget. `schedule="chunk"` compacts after
every prefill chunk (peak cache = budget + chunk); `"end"` once after the whole prompt (the
original papers and kvpress; the prefill cache holds the whole prompt, decode the budget).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("chunk", "end")
POLICIES: dict[str, type[KVPolicy]] = {}


def register(cls: type[KVPolicy]) -> type[KVPolicy]:
    POLICIES[cls.name] = cls
    return cls


def get_policy(policy: str | KVPolicy, **settings) -> KVPolicy:
    """A policy by registry name (settings override its defaults) or a policy instance as is."""
    if isinstance(policy, KVPolicy):
        return dataclasses.replace(policy, **settings).validate() if settings else policy.validate()
    if policy not in POLICIES:
        raise ValueError(f"unknown kv policy {policy!r}; known: {', '.join(sorted(POLICIES))}")
    return POLICIES[policy](**settings).validate()


def pool1d(x: jax.Array, kernel: int) -> jax.Array:
    """Average pool over the last axis, stride 1, zero padding kernel // 2, divided by `kernel`
    (torch `avg_pool1d` with count_include_pad, as SnapKV / kvpress)."""
    if kernel <= 1:
        return x
    pad = kernel // 2
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])
    n = x.shape[-1]
    return sum(padded[..., i : i + n] for i in range(kernel)) / kernel


def per_slot(row_values: jax.Array, pos: jax.Array) -> jax.Array:
    """row_values [b] -> [b * kv, 1], matching the cache's (row, KV head) order."""
    return jnp.repeat(row_values, pos.shape[0] // row_values.shape[0])[:, None]


@dataclasses.dataclass(frozen=True)
class KVPolicy:
    """window: the last `window` positions seen are kept (and observe, for attention scores);
    sinks: the first `sinks` positions are kept; kernel: 1-D pooling of scores (odd, 1 = off)."""

    window: int = 64
    sinks: int = 0
    kernel: int = 1
    schedule: str = "chunk"
    protect_vision: bool = False

    name: ClassVar[str] = ""
    n_obs: ClassVar[int] = 1

    def validate(self) -> KVPolicy:
        if self.window < 0 or self.sinks < 0:
            raise ValueError(
                f"{self.name}: window {self.window} and sinks {self.sinks} must be >= 0"
            )
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"{self.name}: pooling kernel must be odd and >= 1, got {self.kernel}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{self.name}: schedule {self.schedule!r} not in {SCHEDULES}")
        return self

    @property
    def protected_tokens(self) -> int:
        """Tokens every prompt keeps whatever the budget (vision tokens aside)."""
        return self.window + self.sinks

    # --- statistics -------------------------------------------------------------------------
    def observe(self, q_pos: jax.Array, q_valid: jax.Array, seen: jax.Array) -> jax.Array:
        """[n_obs, b, t] weights: the mean over this call's queries in the last `window`
        positions seen (SnapKV's observation window). q_pos, q_valid [b, t]; seen [b]."""
        inside = q_valid & (q_pos >= seen[:, None] - self.window)
        count = jnp.maximum(jnp.sum(inside, axis=1, keepdims=True), 1)
        return (inside / count)[None].astype(jnp.float32)

    def accumulate(self, acc: jax.Array, stats: jax.Array) -> jax.Array:
        return acc + stats

    def carry(self, acc: jax.Array, scores: jax.Array) -> jax.Array:
        """What of the statistics a compaction keeps (before the gather): default all."""
        return acc

    def scores(self, acc: jax.Array, pos: jax.Array, seen: jax.Array) -> jax.Array:
        """acc [n_obs, b * kv, g, S], pos [b * kv, S], seen [b] -> [b * kv, S] (higher = keep)."""
        raise NotImplementedError

    # --- budgets ----------------------------------------------------------------------------
    def layer_targets(self, kept: np.ndarray, lengths: np.ndarray, num_layers: int) -> np.ndarray:
        """Host: kept [b] tokens per row -> [num_layers, b] tokens per layer and row."""
        return np.broadcast_to(kept, (num_layers, len(kept))).copy()

    def head_capacity(self, layer_cap: int) -> int:
        """Slots per KV head the layer's buffer needs for a layer budget of `layer_cap`."""
        return layer_cap

    def head_targets(self, scores, protected, valid, target, cap) -> jax.Array:
        """scores, protected, valid [b, kv, S]; target [b] -> tokens kept per head [b, kv]."""
        return jnp.broadcast_to(target[:, None], scores.shape[:2])

    # --- protection -------------------------------------------------------------------------
    def protected(self, pos: jax.Array, seen: jax.Array, vision: jax.Array | None) -> jax.Array:
        """Slots always kept [b * kv, S]: sinks, the recent window, vision tokens if protected."""
        keep = (pos >= 0) & ((pos < self.sinks) | (pos >= per_slot(seen, pos) - self.window))
        if self.protect_vision and vision is not None:
            rows = jnp.repeat(vision, pos.shape[0] // vision.shape[0], axis=0)
            keep |= (pos >= 0) & jnp.take_along_axis(rows, jnp.clip(pos, 0), axis=1)
        return keep

    def prefix(self, pos: jax.Array, seen: jax.Array) -> jax.Array:
        """Filled slots before the observation window [b * kv, S] (the ones scores rank)."""
        return (pos >= 0) & (pos < per_slot(seen, pos) - self.window)
