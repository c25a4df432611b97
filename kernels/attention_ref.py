"""Reference softmax attention (pure jnp): the semantics every attention kernel must match.

Masking is described, not materialised by the caller: segment ids (0 = padding; a query sees only keys
of its own segment), optional causality by absolute position (so a KV cache with per-sequence lengths
and packed training sequences use the same rule), and an optional extra boolean mask (tree attention).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def attention_mask(
    q_segment_ids: jax.Array,
    kv_segment_ids: jax.Array,
    q_positions: jax.Array | None = None,
    kv_positions: jax.Array | None = None,
    causal: bool = False,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Boolean [batch, q_len, kv_len]: True where a query may attend to a key."""
    allowed = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    if causal:
        if q_positions is None or kv_positions is None:
            raise ValueError("causal attention needs q_positions and kv_positions")
        allowed &= kv_positions[:, None, :] <= q_positions[:, :, None]
    if mask is not None:
        allowed &= mask
    return allowed


def xla_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    q_segment_ids: jax.Array,
    kv_segment_ids: jax.Array,
    q_positions: jax.Array | None = None,
    kv_positions: jax.Array | None = None,
    causal: bool = False,
    mask: jax.Array | None = None,
    scale: float | None = None,
) -> jax.Array:
    """Reference softmax attention with GQA. q: [b, t, h, d]; k, v: [b, s, kv, d] -> [b, t, h, d].

    Logits and softmax are computed in float32; rows with no allowed key return zeros. Key/value heads
    are repeated to the query heads so both products are plain 4-D batched matmuls, and the mask is
    one `where` before a fused softmax: on CPU this is ~3x faster forward (1.6x forward+backward)
    than a grouped 5-D einsum with separate masking passes.
    """
    b, t, h, d = q.shape
    kv = k.shape[2]
    if h % kv:
        raise ValueError(f"query heads {h} not a multiple of kv heads {kv}")
    scale = d**-0.5 if scale is None else scale
    allowed = attention_mask(q_segment_ids, kv_segment_ids, q_positions, kv_positions, causal, mask)
    k, v = jnp.repeat(k, h // kv, axis=2), jnp.repeat(v, h // kv, axis=2)
    logits = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=jnp.float32) * scale
    weights = jax.nn.softmax(jnp.where(allowed[:, None], logits, -1e30), axis=-1)
    out = jnp.einsum(
        "bhts,bshd->bthd", weights.astype(v.dtype), v, preferred_element_type=jnp.float32
    )
    out = out * jnp.any(allowed, axis=-1)[:, :, None, None]
    return out.astype(q.dtype)
