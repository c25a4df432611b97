"""Training losses. Each returns (sum of per-token losses, metrics) so gradient accumulation and
data parallelism can normalise by the global token count exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def next_token_loss(
    logits: jax.Array, targets: jax.Array, loss_mask: jax.Array, z_loss: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked cross-entropy. logits [b, t, v] float32; targets [b, t]; loss_mask [b, t] float.

    Returns (sum over masked tokens of CE + z_loss * logsumexp^2, metrics with token counts).
    """
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[
        ..., 0
    ]
    ce = lse - target_logit
    mask = loss_mask.astype(jnp.float32)
    total = jnp.sum((ce + z_loss * jnp.square(lse)) * mask)
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets) * mask)
    return total, {"ce_sum": jnp.sum(ce * mask), "tokens": jnp.sum(mask), "correct": correct}
