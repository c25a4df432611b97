"""Physical compaction of a compact cache layer: select the slots to keep, gather them to the
front of a smaller buffer, free the rest.

Kept slots stay in slot order, which is position order (writes append at increasing positions and
compaction preserves order), so 1-D pooling over slots pools over neighbouring kept positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from andesvl_jax.infer.kv.policy import KVPolicy
from andesvl_jax.models.kv_cache import CompactLayer

BIG = 3e38  # above any attention score: protected slots sort first


def keep_slots(scores, pos, protected, target, cap: int) -> tuple[jax.Array, jax.Array]:
    """Per (row, head) n = [b * kv]: the top-target[n] slots of scores [n, S] (protected first,
    empty never) -> (idx [n, cap] in slot order, keep [n, cap]); slots past the target are marked
    not kept."""
    cap = min(cap, scores.shape[1])
    ranked = jnp.where(pos >= 0, jnp.where(protected, BIG, scores), -jnp.inf)
    values, idx = jax.lax.top_k(ranked, cap)
    keep = (jnp.arange(cap)[None, :] < target[:, None]) & (values > -jnp.inf)
    order = jnp.argsort(jnp.where(keep, idx, idx + scores.shape[1]), axis=1)
    return jnp.take_along_axis(idx, order, 1), jnp.take_along_axis(keep, order, 1)


def gather_layer(layer: CompactLayer, acc, idx, keep, capacity: int):
    """The kept slots of `layer` (and its statistics acc [n_obs, b * kv, g, S]) at the front of
    buffers of `capacity` slots -> (layer, acc); fill [b] = the most any head of the row keeps."""
    pad = capacity - idx.shape[1]

    def take(x, fill_value):
        out = jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)
        out = jnp.where(keep.reshape(keep.shape + (1,) * (x.ndim - 2)), out, fill_value)
        return jnp.pad(
            out, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2), constant_values=fill_value
        )

    k, v = take(layer.k, 0).astype(layer.k.dtype), take(layer.v, 0).astype(layer.v.dtype)
    pos = take(layer.pos, -1)
    b = layer.fill.shape[0]
    fill = jnp.max(jnp.sum(keep, axis=1).reshape(b, -1), axis=1).astype(jnp.int32)
    n, bk, g, s = acc.shape
    flat = acc.transpose(1, 0, 2, 3).reshape(bk, n * g, s).swapaxes(1, 2)  # [b*kv, S, n*g]
    acc = take(flat, 0.0).swapaxes(1, 2).reshape(bk, n, g, capacity).transpose(1, 0, 2, 3)
    return CompactLayer(k, v, pos, fill), acc


def compact_layer(
    policy: KVPolicy,
    layer: CompactLayer,
    acc,
    seen,
    target,
    vision,
    cap: int,
    capacity: int,
):
    """Evict `layer` down to target [b] tokens per row (per head for head-adaptive policies) with
    at most `cap` per head, into buffers of `capacity` slots -> (layer, acc)."""
    scores = policy.scores(acc, layer.pos, seen)
    protected = policy.protected(layer.pos, seen, vision)
    b, kv = target.shape[0], layer.pos.shape[0] // target.shape[0]
    heads = policy.head_targets(
        scores.reshape(b, kv, -1),
        protected.reshape(b, kv, -1),
        (layer.pos >= 0).reshape(b, kv, -1),
        target,
        cap,
    ).reshape(b * kv)
    idx, keep = keep_slots(scores, layer.pos, protected, heads, cap)
    return gather_layer(layer, policy.carry(acc, scores), idx, keep, capacity)
