"""cuDNN flash attention (`jax.nn.dot_product_attention(implementation="cudnn")`) behind our API.

What jax 0.10.2's public signature offers: `mask`/`bias` (4-D, broadcastable to [b, h, t, s]),
`is_causal` (by index, top-left aligned), `query_seq_lengths` / `key_value_seq_lengths` (one
trailing-padding length per row) and a local window. It has no segment ids (the packed cu_seqlens
layout exists only in the private `jax._src.cudnn` API, Hopper+), and its causal rule is by index,
not by position, so it cannot express packed rows or a KV cache prefill on its own. This wrapper
therefore passes our whole visibility rule (segments, causality by position, the optional tree
mask) as one boolean [b, 1, t, s] mask: exact for every case the reference supports, at the cost
of O(t·s) *bytes* per row (cuDNN turns it into an additive bias in the input dtype and returns its
gradient), not O(t·s·h) float32 logits. Not supported (a clear error, not a silent fallback):
float32 inputs (cuDNN flash is fp16/bf16 only), head_dim not a multiple of 8 or above 128
(256 on Hopper), non-GPU backends.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from andesvl_jax.kernels._common import pad_axis, round_up
from andesvl_jax.kernels.attention_ref import attention_mask

_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
MAX_HEAD_DIM = 128  # 256 on Hopper and later; 128 is what every cuDNN-flash GPU accepts
# The jax.nn backend this wrapper asks for; the CPU tests set "xla" to check our mask mapping.
IMPLEMENTATION = "cudnn"


def cudnn_unsupported(q: jax.Array, k: jax.Array) -> str | None:
    """Why cuDNN flash attention cannot run these inputs here (None: it can)."""
    if jax.default_backend() not in ("gpu", "cuda"):
        return f"needs a CUDA GPU backend, this is {jax.default_backend()!r}"
    if jnp.dtype(q.dtype) not in _DTYPES or k.dtype != q.dtype:
        return f"needs bfloat16/float16 q, k, v (got {q.dtype}, {k.dtype}); cast or use 'blockwise'"
    d = q.shape[-1]
    if d % 8 or d > MAX_HEAD_DIM:
        return f"needs head_dim a multiple of 8 and <= {MAX_HEAD_DIM} (got {d})"
    return None


def cudnn_attention(
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
    """cuDNN flash attention with our masking rules. q: [b, t, h, d]; k, v: [b, s, kv, d] -> q's shape.

    Arguments and semantics: `attention_ref.xla_attention` (rows with no visible key return 0).
    """
    reason = cudnn_unsupported(q, k)
    if reason:
        raise NotImplementedError(f"attention impl 'cudnn' {reason}")
    b, t, _, d = q.shape
    s = k.shape[1]
    allowed = attention_mask(q_segment_ids, kv_segment_ids, q_positions, kv_positions, causal, mask)
    # cuDNN's training path with a bias needs even lengths: pad with queries that are dropped and
    # keys nothing sees.
    tp, sp = round_up(t, 2), round_up(s, 2)
    allowed = pad_axis(pad_axis(allowed, 1, tp, False), 2, sp, False)
    out = jax.nn.dot_product_attention(
        pad_axis(q, 1, tp),
        pad_axis(k, 1, sp),
        pad_axis(v, 1, sp),
        mask=allowed[:, None],
        scale=d**-0.5 if scale is None else scale,
        implementation=IMPLEMENTATION,
    )[:, :t]
    # A row whose keys are all masked gets a uniform average from cuDNN; the reference gives 0.
    return out * jnp.any(allowed[:, :t], axis=-1)[:, :, None, None].astype(out.dtype)
