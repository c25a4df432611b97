"""PyramidKV (Cai et al. 2024): SnapKV scores with more budget in lower layers, less in higher.

The per-layer budgets follow kvpress's `PyramidKVPress.get_layer_budget` (KVCache-Factory's
formula): the total over layers equals the uniform budget; layer i keeps
max_num - i (max_num - min_num) / (L - 1) with min_num = (budget - window) / beta; it falls back to
the uniform budget where the pyramid does not fit (short prompts).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from andesvl_jax.infer.kv.policy import register
from andesvl_jax.infer.kv.snapkv import SnapKV


def pyramid_budget(length: int, kept: int, window: int, beta: float, layer: int, layers: int):
    """Tokens kept in `layer` of `layers` for a `length`-token prompt with `kept` on average."""
    fraction = kept / length
    capacity = window + length * fraction
    min_num = (capacity - window) / beta
    max_num = (capacity - window) * 2 - min_num
    if max_num >= length - window:
        max_num = length - window
        min_num = (capacity - window) * 2 - max_num
    if not (length >= max_num >= min_num >= window) or layers == 1:
        return kept
    steps = (max_num - min_num) / (layers - 1)
    return round(max_num - layer * steps)


@register
@dataclasses.dataclass(frozen=True)
class PyramidKV(SnapKV):
    beta: float = 20.0
    name = "pyramidkv"

    def validate(self):
        if self.beta < 1:
            raise ValueError(f"pyramidkv: beta must be >= 1, got {self.beta}")
        return super().validate()

    def layer_targets(self, kept, lengths, num_layers):
        out = np.zeros((num_layers, len(kept)), np.int64)
        for r, (k, n) in enumerate(zip(kept, lengths, strict=True)):
            for layer in range(num_layers):
                out[layer, r] = pyramid_budget(
                    int(n), int(k), self.window, self.beta, layer, num_layers
                )
        return out
