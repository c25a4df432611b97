"""Per-token and per-sequence log-probabilities of given targets, the inputs of MPO and GRPO.

Alignment is the caller's: `logits[:, i]` must be the prediction for `targets[:, i]` (i.e. logits
already shifted by one against the token ids, as in `next_token_loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from andesvl_jax.train.chunked_loss import Head, map_head_chunks


def token_logprobs(logits: jax.Array, targets: jax.Array, temperature: float = 1.0) -> jax.Array:
    """log softmax(logits / temperature)[target] in float32.

    logits: [b, t, v]; targets: [b, t] int. Returns [b, t] float32, computed as
    `shifted[target] - log(sum(exp(shifted)))` with `shifted = logits - max`, so large logits stay
    finite and precise. `temperature` must match the sampling temperature when the log-probs are
    compared with those of the sampler (GRPO's pi_old).
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"token_logprobs expects logits [b, t, v] and targets [b, t]; got logits "
            f"{logits.shape} and targets {targets.shape}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.astype(jnp.float32)
    # Shift by the (constant) row max before scaling: differences of nearby large logits are
    # exact in float32, whereas `logit - logsumexp` at |logit| ~ 1e4 loses ~1e-3 to rounding.
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    if temperature != 1.0:
        shifted = shifted / temperature
    lse = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
    target = jnp.take_along_axis(shifted, targets[..., None].astype(jnp.int32), axis=-1)
    return target[..., 0] - lse


def sequence_logprob(token_logps: jax.Array, mask: jax.Array) -> jax.Array:
    """Sum of the masked token log-probs of each sequence: token_logps, mask [b, t] -> [b]."""
    if token_logps.shape != mask.shape:
        raise ValueError(
            f"sequence_logprob: token_logps {token_logps.shape} and mask {mask.shape} differ"
        )
    return jnp.sum(token_logps.astype(jnp.float32) * mask.astype(jnp.float32), axis=-1)


def chunked_token_logprobs(
    head: Head,
    hidden: jax.Array,
    targets: jax.Array,
    temperature: float = 1.0,
    *,
    chunk: int | None,
) -> jax.Array:
    """`token_logprobs(head(hidden), targets, temperature)` [b, t], the head applied `chunk`
    positions at a time (train/chunked_loss.py). hidden [b, t, d]; targets [b, t] int."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return map_head_chunks(
        lambda logits, tgt: token_logprobs(logits, tgt, temperature),
        head,
        hidden,
        targets,
        chunk=chunk,
    )


def batch_token_logprobs(
    model, batch, temperature: float = 1.0, chunk: int | None = None
) -> jax.Array:
    """log pi(target) [B, L] of an AndesVL model on a (packed) TrainBatch-like batch; with a
    temperature, of the distribution softmax(logits / temperature) a sampler at it draws from.

    chunk: sequence positions per LM-head chunk (None / 0: the model's full logits); a chunked
    call needs an AndesVL-like model (`return_hidden=True`, `model.llm.logits`).
    """
    if not chunk:
        logits, _ = model(
            batch.input_ids, batch.images, positions=batch.positions, segment_ids=batch.segment_ids
        )
        return token_logprobs(logits, batch.targets, temperature)
    hidden, _ = model(
        batch.input_ids,
        batch.images,
        positions=batch.positions,
        segment_ids=batch.segment_ids,
        return_hidden=True,
    )
    return chunked_token_logprobs(model.llm.logits, hidden, batch.targets, temperature, chunk=chunk)
