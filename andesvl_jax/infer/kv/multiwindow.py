"""Our policy, `multiwindow`: GQA-aware SnapKV with memory across observation windows and sinks.

SnapKV scores a long prompt with one window: the prompt's tail. Under chunked prefill with a
bounded cache that window moves: every compaction sees only the newest chunk's tail, and a token
that the previous chunks needed but the newest one does not is dropped for good. Three changes:

1. **Several observation windows** (off by default: `decay=0`). Each slot can remember the best
   (decayed) score it had in any earlier window; its score is then max(decay x remembered, this
   window's score). Measured on the trained long-context model (docs/kv_eviction.md) this *hurt*
   (summary + cwe, 192-character prompts, 8 per cell, 25 %: decay 0.9 35.3, 0.3 37.0, 0 47.0;
   SnapKV 46.0; all five tasks on the better-trained model, 120 samples: 0.9 16.5, 0 20.0).
   Likely cause: a chunk's tail attends sharply to its own neighbourhood, and those
   remembered local peaks outrank the final window's (the question's) flatter scores.
2. **GQA-aware aggregation.** A KV head serves g query heads; SnapKV/kvpress average their pooled
   scores, which divides a key that one query head needs sharply by g. We take the max over the
   group: a key one head of the group relies on survives.
3. **Attention sinks kept** (first 4 positions; StreamingLLM shows they hold attention mass that the
   softmax needs), plus the final window (the question's tail), vision tokens optionally.
4. **Optionally a wider observation window than the kept one** (off: `observe_window=0`): the last
   `observe_window` queries score the prefix while only the last `window` are protected, so the
   whole question can vote under a small protected window. Measured with window 8: 32 gained 3.8
   points at 25 % on one suite and lost 3.0 on another (120 samples each): no evidence either way.

Cost: one [b * kv, S] score per layer carried between chunks. Each part switches off for the
ablation (aggregate="mean", sinks=0, observe_window=0, decay=0: all off is SnapKV with this
window).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from andesvl_jax.infer.kv.policy import KVPolicy, register
from andesvl_jax.infer.kv.snapkv import window_scores


@register
@dataclasses.dataclass(frozen=True)
class MultiWindow(KVPolicy):
    window: int = 32
    sinks: int = 4
    kernel: int = 5
    decay: float = 0.0  # memory off: measured to hurt (docs/kv_eviction.md)
    aggregate: str = "max"
    observe_window: int = 0  # queries whose attention scores the prefix (0: `window`)
    name = "multiwindow"
    n_obs = 2  # 0: this window's attention, 1: the remembered score (broadcast over the group)

    def validate(self):
        if not 0 <= self.decay <= 1 or self.aggregate not in ("max", "mean"):
            raise ValueError(
                f"multiwindow: decay {self.decay} must be in [0, 1], aggregate 'max' or 'mean'"
            )
        if self.observe_window < 0:
            raise ValueError(f"multiwindow: observe_window {self.observe_window} must be >= 0")
        return super().validate()

    def observe(self, q_pos, q_valid, seen):
        n = self.observe_window or self.window
        inside = q_valid & (q_pos >= seen[:, None] - n)
        count = jnp.maximum(jnp.sum(inside, axis=1, keepdims=True), 1)
        window = (inside / count)[None].astype(jnp.float32)
        return jnp.concatenate([window, jnp.zeros_like(window)])

    def scores(self, acc, pos, seen):
        pooled = window_scores(self, acc, pos, seen)
        now = jnp.max(pooled, axis=1) if self.aggregate == "max" else jnp.mean(pooled, axis=1)
        return jnp.maximum(now, self.decay * acc[1, :, 0])

    def carry(self, acc, scores):
        remembered = jnp.broadcast_to(scores[:, None, :], acc.shape[1:])
        return jnp.stack([jnp.zeros_like(acc[0]), remembered])
