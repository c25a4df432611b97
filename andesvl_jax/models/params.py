"""Parameter counting without allocation (`jax.eval_shape` of the model constructor)."""

from __future__ import annotations

import math

import jax
from flax import nnx

from andesvl_jax.config import AndesVLConfig


def count_params(cfg: AndesVLConfig) -> dict[str, int]:
    """Parameters per top-level module of AndesVL (vision, projector, llm) and in total."""
    from andesvl_jax.models.andesvl import AndesVL

    state = nnx.state(nnx.eval_shape(lambda: AndesVL(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    counts = {
        name: sum(math.prod(x.shape) for x in jax.tree.leaves(sub)) for name, sub in state.items()
    }
    counts["total"] = sum(counts.values())
    return counts
