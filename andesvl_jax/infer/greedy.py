"""Greedy decoding with the KV cache: one jitted prefill + a `lax.scan` of decode steps (no per-token Python).

The minimal exact decoder used to check imported checkpoints; the full engine (sampling, mixed prompt
lengths, stop tokens, streaming) builds on the same cache path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.models.andesvl import AndesVL


@functools.partial(jax.jit, static_argnums=(0, 5))
def _generate(graphdef, state, input_ids, images, image_flags, max_new_tokens: int):
    model = nnx.merge(graphdef, state)
    b, t = input_ids.shape
    cache = model.init_cache(b, t + max_new_tokens)
    logits, cache = model(input_ids, images, image_flags=image_flags, cache=cache)
    first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)

    def step(carry, _):
        # The weights ride in the carry: an NNX module must be rebuilt at the scan's trace level.
        token, cache, weights = carry
        logits, cache = nnx.merge(graphdef, weights)(token[:, None], cache=cache)
        return (jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32), cache, weights), token

    _, tokens = jax.lax.scan(step, (first, cache, state), None, length=max_new_tokens)
    return tokens.T


def greedy_generate(model: AndesVL, input_ids: jax.Array, images=None, image_flags: jax.Array | None = None,
                    max_new_tokens: int = 16) -> jax.Array:
    """input_ids [b, t] (unpadded prompts of equal length) -> the next `max_new_tokens` greedy ids [b, n]."""
    graphdef, state = nnx.split(model)
    return _generate(graphdef, state, jnp.asarray(input_ids), images, image_flags, max_new_tokens)
