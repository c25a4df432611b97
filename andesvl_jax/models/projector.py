"""Pixel shuffle (2x2 patch groups -> one token) and the MLP projector into the LLM's width."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.config import AndesVLConfig
from andesvl_jax.models.mlp import GeluMLP


def pixel_shuffle(
    features: jax.Array, segment_ids: jax.Array, group: int
) -> tuple[jax.Array, jax.Array]:
    """Concatenate each run of `group` consecutive patches (a 2x2 block in packed order).

    features: [b, N, d]; segment_ids: [b, N] -> ([b, N/group, group*d], token segment ids [b, N/group]).
    Token j of an image is [top-left | top-right | bottom-left | bottom-right] of its block j.
    """
    b, n, d = features.shape
    if n % group:
        raise ValueError(
            f"packed patch buffer of {n} is not a multiple of the shuffle group {group}"
        )
    return features.reshape(b, n // group, group * d), segment_ids[:, ::group]


class Projector(nnx.Module):
    """Linear(4d, 4d) -> GELU (exact) -> Linear(4d, d_llm); with pixel shuffle off: d -> d -> d_llm."""

    def __init__(self, cfg: AndesVLConfig, *, rngs: nnx.Rngs, **dtypes):
        width = cfg.projector_in
        self.mlp = GeluMLP(
            width,
            width,
            out_dim=cfg.text.hidden_size,
            in_axis="proj_in",
            mlp_axis="proj_hidden",
            out_axis="embed",
            act="gelu",
            rngs=rngs,
            **dtypes,
        )
        self.group = cfg.tokens_per_patch_group

    def __call__(self, features: jax.Array, segment_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        """features [b, N, d_vit] -> (image tokens [b, N/group, d_llm], their segment ids [b, N/group])."""
        tokens, token_segments = pixel_shuffle(features, jnp.asarray(segment_ids), self.group)
        return self.mlp(tokens), token_segments
