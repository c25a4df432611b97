"""Greedy decoding with the KV cache: one jitted prefill + a `lax.scan` of decode steps (no per-token Python).

Prompts may have different lengths (right-padded, with `prompt_lengths`): each row's cache advances
by its own length and decoding continues from its own last token. The minimal exact decoder used to
check imported checkpoints and to evaluate trained ones; the full engine (sampling, stop tokens,
streaming) builds on the same cache path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.models.andesvl import AndesVL


@functools.partial(jax.jit, static_argnums=(0, 6))
def _generate(graphdef, state, input_ids, prompt_lengths, images, image_flags, max_new_tokens: int):
    model = nnx.merge(graphdef, state)
    b, t = input_ids.shape
    segment_ids = (jnp.arange(t)[None, :] < prompt_lengths[:, None]).astype(jnp.int32)
    cache = model.init_cache(b, t + max_new_tokens)
    logits, cache = model(
        input_ids, images, image_flags=image_flags, segment_ids=segment_ids, cache=cache
    )
    last = jnp.take_along_axis(logits, (prompt_lengths - 1)[:, None, None], axis=1)[:, 0]
    first = jnp.argmax(last, axis=-1).astype(jnp.int32)

    def step(carry, _):
        # The weights ride in the carry: an NNX module must be rebuilt at the scan's trace level.
        token, cache, weights = carry
        logits, cache = nnx.merge(graphdef, weights)(token[:, None], cache=cache)
        return (jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32), cache, weights), token

    _, tokens = jax.lax.scan(step, (first, cache, state), None, length=max_new_tokens)
    return tokens.T


def greedy_generate(
    model: AndesVL,
    input_ids,
    images=None,
    image_flags=None,
    max_new_tokens: int = 16,
    prompt_lengths=None,
) -> jax.Array:
    """input_ids [b, t] (right-padded when prompt_lengths [b] is given) -> next greedy ids [b, n]."""
    input_ids = jnp.asarray(input_ids)
    if prompt_lengths is None:
        prompt_lengths = jnp.full((input_ids.shape[0],), input_ids.shape[1], jnp.int32)
    graphdef, state = nnx.split(model)
    return _generate(
        graphdef,
        state,
        input_ids,
        jnp.asarray(prompt_lengths, jnp.int32),
        images,
        image_flags,
        max_new_tokens,
    )
