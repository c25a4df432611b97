"""The LM head applied over sequence chunks, so at most [b, chunk, vocab] logits exist at once.

At real sizes the full logits of a step do not fit: [b, 32 768, 151 936] float32 is 20 GB per row,
and the backward holds a second tensor of that size (the softmax gradient). `map_head_chunks`
scans the head plus a per-token function (cross-entropy, token log-probs) over chunks of the
sequence axis, each chunk under `jax.checkpoint`: the forward keeps only the small per-token
outputs, and the backward recomputes one chunk's logits at a time, so the gradient w.r.t. the
hidden states is produced chunk by chunk and the gradient w.r.t. the head weights (closed over by
the scan body) is accumulated across chunks by the scan's transpose. Peak memory is
O(b x chunk x vocab) instead of O(b x t x vocab); the arithmetic is the same, so the results equal
the unchunked ones up to float rounding (tests/train/test_chunked_loss.py).

Chunks run along the sequence axis and keep every row, so a batch sharded over data x fsdp stays
sharded inside each chunk (a chunk of the flattened [b * t] axis would sit on one device).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from andesvl_jax.sharding import constrain

# hidden [b, c, d] -> float32 logits [b, c, vocab]: the tied or untied LM head (`model.llm.logits`)
Head = Callable[[jax.Array], jax.Array]


def map_head_chunks(
    fn: Callable[..., Any],
    head: Head,
    hidden: jax.Array,
    *per_token: jax.Array,
    chunk: int | None,
) -> Any:
    """`fn(head(hidden), *per_token)` computed `chunk` sequence positions at a time.

    hidden: [b, t, d]; per_token: arrays [b, t, ...] sliced alongside (targets, masks);
    fn(logits [b, c, v], *per_token chunks) -> a pytree of per-token arrays [b, c, ...].
    Returns that pytree at full length [b, t, ...]. chunk None / 0 (or >= t): one unchunked call.
    A t that `chunk` does not divide is zero-padded; the padded positions are dropped.
    """
    if hidden.ndim != 3:
        raise ValueError(f"map_head_chunks: hidden must be [b, t, d], got shape {hidden.shape}")
    b, t = hidden.shape[:2]
    for i, x in enumerate(per_token):
        if x.shape[:2] != (b, t):
            raise ValueError(
                f"map_head_chunks: per-token input {i} has shape {x.shape}, expected [{b}, {t}, ...]"
                f" like hidden {hidden.shape}"
            )
    if chunk is not None and chunk < 0:
        raise ValueError(f"loss chunk must be >= 0 (0 = unchunked), got {chunk}")
    if not chunk or chunk >= t:
        return fn(head(hidden), *per_token)
    n = -(-t // chunk)
    pad = n * chunk - t

    def split(x):  # [b, t, ...] -> [n, b, chunk, ...]
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        return jnp.swapaxes(x.reshape(b, n, chunk, *x.shape[2:]), 0, 1)

    def merge(y):  # [n, b, chunk, ...] -> [b, t, ...]
        return jnp.swapaxes(y, 0, 1).reshape(b, n * chunk, *y.shape[3:])[:, :t]

    # Saves only its inputs (a slice of `hidden`): the backward recomputes this chunk's logits.
    @functools.partial(jax.checkpoint, prevent_cse=False)
    def one_chunk(h, xs):
        h = constrain(h, ("batch", "length", "embed"))
        logits = constrain(head(h), ("batch", "length", "vocab"))
        return fn(logits, *xs)

    def body(carry, inputs):
        return carry, one_chunk(*inputs)

    _, ys = jax.lax.scan(body, None, (split(hidden), tuple(split(x) for x in per_token)))
    return jax.tree.map(merge, ys)
