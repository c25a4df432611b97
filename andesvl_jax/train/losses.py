"""Training losses. Each returns (sum of per-token losses, metrics) so gradient accumulation and
data parallelism can normalise by the global token count exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from andesvl_jax.train.chunked_loss import Head, map_head_chunks


def token_cross_entropy(
    logits: jax.Array, targets: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-token (cross-entropy, logsumexp, argmax == target), each [b, t] float32.

    logits [b, t, v]; targets [b, t] int. `next_token_loss` and its chunked form
    (train/chunked_loss.py) both reduce exactly these.
    """
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[
        ..., 0
    ]
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return lse - target_logit, lse, correct


def reduce_next_token(
    ce: jax.Array, lse: jax.Array, correct: jax.Array, loss_mask: jax.Array, z_loss: float
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked sums of per-token CE [b, t] (+ z_loss * lse^2) and the token/accuracy counts."""
    mask = loss_mask.astype(jnp.float32)
    total = jnp.sum((ce + z_loss * jnp.square(lse)) * mask)
    return total, {
        "ce_sum": jnp.sum(ce * mask),
        "tokens": jnp.sum(mask),
        "correct": jnp.sum(correct * mask),
    }


def next_token_loss(
    logits: jax.Array, targets: jax.Array, loss_mask: jax.Array, z_loss: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked cross-entropy. logits [b, t, v] float32; targets [b, t]; loss_mask [b, t] float.

    Returns (sum over masked tokens of CE + z_loss * logsumexp^2, metrics with token counts).
    """
    return reduce_next_token(*token_cross_entropy(logits, targets), loss_mask, z_loss)


def chunked_next_token_loss(
    head: Head,
    hidden: jax.Array,
    targets: jax.Array,
    loss_mask: jax.Array,
    z_loss: float = 0.0,
    *,
    chunk: int | None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`next_token_loss(head(hidden), ...)` with the head applied `chunk` positions at a time.

    hidden [b, t, d] (the model's `return_hidden=True` output); head: hidden -> float32 logits
    (`model.llm.logits`); targets [b, t]; loss_mask [b, t]. Same outputs as `next_token_loss`;
    at most [b, chunk, vocab] logits live at once, in the forward and the backward.
    """
    per_token = map_head_chunks(token_cross_entropy, head, hidden, targets, chunk=chunk)
    return reduce_next_token(*per_token, loss_mask, z_loss)
