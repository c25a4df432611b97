"""The decoding KV cache: its layout, the per-row write, and attention over it.

Layout: heads-major with rows and KV heads flattened, [b * kv_heads, max_len, head_dim] per layer
(row r, head h at index r * kv_heads + h), so one (row, KV head) is a contiguous [max_len, head_dim]
matrix that the attention products read in place: a slot-major layout makes XLA transpose the
whole cache before every product, and a 4-D one makes it reshape the buffer, which it then
re-materialises per consumer. A model whose layers are stacked for `scan` keeps the layers stacked
too ([layers, b * kv, S, hd]); a model with separate layers (the decoding layout,
`infer.engine.decoding_layout`) keeps a tuple of per-layer buffers, so a decode step updates each
layer's buffer in place (a `dynamic_update_slice` on a loop-carried buffer) instead of slicing a
stacked cache and stacking it back, which copies all of it every step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from andesvl_jax.config import TextConfig
from andesvl_jax.kernels import blockwise_attention, blockwise_attention_stats, resolve_attention
from andesvl_jax.kernels.attention_blockwise import DEFAULT_BLOCK

Layers = jax.Array | tuple[jax.Array, ...]


class TreeMask(NamedTuple):
    """Which cache slots a call's queries see when they form a tree (speculative decoding) rather
    than a causal run: every slot below `base` [b] (the committed prefix), and in the window of
    `mask.shape[-1]` slots from `base` exactly those `mask` [b, t, W] marks (a node's ancestors and
    itself). Slots at or past base + W are never seen."""

    base: jax.Array
    mask: jax.Array


class KVCache(NamedTuple):
    """k, v: [layers, b * kv_heads, max_len, head_dim], or a tuple of `layers` arrays
    [b * kv_heads, max_len, head_dim]; lengths: [b] filled slots per sequence."""

    k: Layers
    v: Layers
    lengths: jax.Array

    @classmethod
    def init(
        cls,
        cfg: TextConfig,
        batch: int,
        max_len: int,
        dtype=jnp.float32,
        *,
        stacked: bool = True,
    ) -> KVCache:
        shape = (batch * cfg.num_kv_heads, max_len, cfg.head_dim)

        def zeros():
            if stacked:
                return jnp.zeros((cfg.num_layers, *shape), dtype)
            return tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_layers))

        return cls(zeros(), zeros(), jnp.zeros((batch,), jnp.int32))

    @property
    def stacked(self) -> bool:
        return not isinstance(self.k, tuple)


def write(cache: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """cache [b * kv, S, hd] <- new [b, T, kv, hd] at per-row slot `start` [b] (clamped so the T
    slots fit, as `dynamic_update_slice`).

    One `dynamic_update_slice` per row on the whole buffer, not a vmap: that becomes a scatter
    with a bounds-check select, which XLA re-materialises (copying the cache) for each consumer.
    """
    b, t, kv, hd = new.shape
    new = new.astype(cache.dtype).swapaxes(1, 2).reshape(b * kv, t, hd)
    for row in range(b):
        block = new[row * kv : (row + 1) * kv]
        cache = jax.lax.dynamic_update_slice(cache, block, (row * kv, start[row], 0))
    return cache


def tree_allowed(tree: TreeMask, slots: int) -> jax.Array:
    """[b, t, S] bool: the slots each query of a tree call sees (`TreeMask`)."""
    s = jnp.arange(slots, dtype=jnp.int32)[None, :]
    rel = s - tree.base[:, None]  # [b, S]
    width = tree.mask.shape[-1]
    inside = (rel >= 0) & (rel < width)
    picked = jnp.take_along_axis(
        tree.mask,
        jnp.broadcast_to(jnp.clip(rel, 0, width - 1)[:, None, :], tree.mask.shape[:2] + (slots,)),
        axis=2,
    )
    return jnp.where(inside[:, None, :], picked, (rel < 0)[:, None, :])


def cached_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    q_valid: jax.Array,
    q_slots: jax.Array,
    tree: TreeMask | None = None,
) -> jax.Array:
    """Softmax attention of new queries over the cache (after this call's write).

    q [b, t, h, d]; k, v [b * kv, S, d]; q_valid [b, t] (False = padding: output 0); q_slots [b, t]:
    each query's own slot, it sees every slot up to it (with a `tree`, the slots it marks instead).
    Same rule and float32 softmax as
    `kernels.attention_ref.xla_attention` with causal positions; GQA without repeating K/V: the g = h / kv query
    heads of a KV head (times t) are the rows of one matmul against that head's [S, d] block.
    """
    b, t, h, d = q.shape
    kv, slots = k.shape[0] // b, k.shape[1]
    if h % kv:
        raise ValueError(f"query heads {h} not a multiple of kv heads {kv}")
    g = h // kv
    rows = q.reshape(b, t, kv, g, d).transpose(0, 2, 3, 1, 4).reshape(b * kv, g * t, d)
    logits = jnp.einsum(
        "nmd,nsd->nms", rows, k.astype(q.dtype), preferred_element_type=jnp.float32
    ) * (d**-0.5)
    if tree is None:
        seen = jnp.arange(slots, dtype=jnp.int32)[None, None, :] <= q_slots[:, :, None]
    else:
        seen = tree_allowed(tree, slots)
    allowed = q_valid[:, :, None] & seen  # [b, t, S]
    mask = jnp.broadcast_to(allowed[:, None, None], (b, kv, g, t, slots))
    logits = jnp.where(mask, logits.reshape(b, kv, g, t, slots), -1e30)
    weights = jax.nn.softmax(logits, axis=-1).reshape(b * kv, g * t, slots)
    out = jnp.einsum(
        "nms,nsd->nmd",
        weights.astype(q.dtype),
        v.astype(q.dtype),
        preferred_element_type=jnp.float32,
    )
    out = out.reshape(b, kv, g, t, d).transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)
    out = out * jnp.any(allowed, axis=-1)[:, :, None, None]
    return out.astype(q.dtype)


# --- The compact (evicting) cache ----------------------------------------------------------------
# After KV-cache eviction (`infer/kv/`) each (row, KV head) keeps its own set of positions, so slot
# and position part ways: every slot records the position (RoPE angle) of the key it holds, -1 for
# an empty or evicted slot, and writes go to a per-row fill counter instead of the row's length.
# The layout of k and v stays [b * kv, S, head_dim] per layer (read in place by the products, as
# above); S is the layer's capacity (budget + chunk while prefilling, budget + max_new decoding),
# not the prompt length.


class CompactLayer(NamedTuple):
    """One layer of a compact cache. k, v: [b * kv, S, hd]; pos: [b * kv, S] int32 position held
    by each slot (-1 = empty); fill: [b] next slot to write per row. obs (input): [n_obs, b, t]
    weights of this call's queries in the attention statistics, or None; stats (output):
    [n_obs, b * kv, g, S] float32 = sum over queries of obs x softmax weight, per query head."""

    k: jax.Array
    v: jax.Array
    pos: jax.Array
    fill: jax.Array
    obs: jax.Array | None = None
    stats: jax.Array | None = None


class CompactKVCache(NamedTuple):
    """A compact cache: one CompactLayer per layer (capacities may differ per layer, e.g.
    PyramidKV); lengths [b]: tokens seen per row = the RoPE position of the next token."""

    layers: tuple[CompactLayer, ...]
    lengths: jax.Array

    @property
    def stacked(self) -> bool:
        return False

    def with_obs(self, obs: jax.Array | None) -> CompactKVCache:
        layers = tuple(layer._replace(obs=obs, stats=None) for layer in self.layers)
        return CompactKVCache(layers, self.lengths)


def write_positions(pos: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """pos [b * kv, S] <- new [b, T] (each row's positions, -1 for padding) at slot start [b]."""
    b, t = new.shape
    kv = pos.shape[0] // b
    for row in range(b):
        block = jnp.broadcast_to(new[row], (kv, t)).astype(pos.dtype)
        pos = jax.lax.dynamic_update_slice(pos, block, (row * kv, start[row]))
    return pos


def compact_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    q_valid: jax.Array,
    q_pos: jax.Array,
    kv_pos: jax.Array,
    obs: jax.Array | None,
    impl: str = "auto",
) -> tuple[jax.Array, jax.Array | None]:
    """Attention of new queries over a compact cache (after this call's write) -> (out, stats).

    q [b, t, h, d]; k, v [b * kv, S, d]; q_valid, q_pos [b, t]; kv_pos [b * kv, S] (-1 = empty):
    a query at position p sees every filled slot holding a position <= p, per (row, KV head).
    obs [n, b, t] or None: stats [n, b * kv, g, S] = sum_t obs[., b, t] * weights[b, kv, g, t, S].
    By the attention dispatch (`resolve_attention`, t x S scores per head): "xla" materialises the
    [b, h, t, S] softmax (`dense_compact_attention`; faster to compile at small sizes), any other
    impl runs the blockwise kernel (`blockwise_compact_attention`: one tile of scores at a time).
    """
    if resolve_attention(impl, q, k) == "xla":
        return dense_compact_attention(q, k, v, q_valid, q_pos, kv_pos, obs)
    return blockwise_compact_attention(q, k, v, q_valid, q_pos, kv_pos, obs)


def blockwise_compact_attention(
    q, k, v, q_valid, q_pos, kv_pos, obs, block_q: int = 128, block_k: int = DEFAULT_BLOCK
):
    """`compact_attention` by the blockwise kernel: temporaries bounded by the tiles (block_q
    queries x block_k slots per head), not t x S. Each (row, KV head) holds its own positions, so
    the KV heads fold into the kernel's batch (its kv positions are per batch row): [b * kv, S, 1,
    d] is the cache as is. Query tiles of 128: the policies observe a window of <= 64 queries per
    chunk, and the statistics sweep skips every query tile without weight (a chunk of 1024 against
    33K slots, 2 cores at load ~8, min of 5: window statistics 282 ms vs 274 ms for the attention
    alone with 128-query tiles, 349 vs 316 ms with 512)."""
    b, t, h, d = q.shape
    kv = k.shape[0] // b
    g = h // kv

    def rows(x):  # [b, t] -> [b * kv, t], the cache's (row, KV head) order
        return jnp.repeat(x, kv, axis=0)

    args = (
        q.reshape(b, t, kv, g, d).swapaxes(1, 2).reshape(b * kv, t, g, d),
        k[:, :, None].astype(q.dtype),
        v[:, :, None].astype(q.dtype),
    )
    kw = dict(
        q_segment_ids=rows(jnp.where(q_valid, 1, 2)),  # padding (2) matches no slot (0 or 1)
        kv_segment_ids=(kv_pos >= 0).astype(jnp.int32),
        q_positions=rows(q_pos),
        kv_positions=kv_pos,
        causal=True,
        block_q=block_q,
        block_k=block_k,
    )
    if obs is None:
        out, stats = blockwise_attention(*args, **kw), None
    else:
        out, stats = blockwise_attention_stats(*args, jnp.repeat(obs, kv, axis=1), **kw)
    return out.reshape(b, kv, t, g, d).swapaxes(1, 2).reshape(b, t, h, d), stats


def dense_compact_attention(q, k, v, q_valid, q_pos, kv_pos, obs):
    """`compact_attention` with the whole [b, kv, g, t, S] float32 softmax materialised (the
    reference; same GQA row folding as `cached_attention`)."""
    b, t, h, d = q.shape
    kv, slots = k.shape[0] // b, k.shape[1]
    g = h // kv
    rows = q.reshape(b, t, kv, g, d).transpose(0, 2, 3, 1, 4).reshape(b * kv, g * t, d)
    logits = jnp.einsum(
        "nmd,nsd->nms", rows, k.astype(q.dtype), preferred_element_type=jnp.float32
    ) * (d**-0.5)
    held = kv_pos.reshape(b, kv, 1, 1, slots)
    allowed = (
        q_valid[:, None, None, :, None] & (held >= 0) & (held <= q_pos[:, None, None, :, None])
    )  # [b, kv, 1, t, S]
    logits = jnp.where(allowed, logits.reshape(b, kv, g, t, slots), -1e30)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum(
        "nms,nsd->nmd",
        weights.reshape(b * kv, g * t, slots).astype(q.dtype),
        v.astype(q.dtype),
        preferred_element_type=jnp.float32,
    )
    sees = jnp.any(allowed, axis=-1)  # [b, kv, 1, t]: a query that sees nothing weighs nothing
    out = out.reshape(b, kv, g, t, d) * sees[..., None]
    out = out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d).astype(q.dtype)
    stats = None
    if obs is not None:
        w = obs.astype(jnp.float32)[:, :, None, :] * sees[None, :, :, 0]  # [n, b, kv, t]
        stats = jnp.einsum("bkgts,nbkt->nbkgs", weights, w)
        stats = stats.reshape(obs.shape[0], b * kv, g, slots)
    return out, stats


def compact_step(
    layer: CompactLayer, q, k, v, positions: jax.Array, valid: jax.Array, impl: str = "auto"
) -> tuple[jax.Array, CompactLayer]:
    """Write this call's k, v [b, t, kv, hd] at each row's fill slot and attend -> (out, layer).

    positions, valid [b, t]; padding (valid False) is written with position -1, invisible, and
    overwritten by the row's next write (fill advances by the valid count only)."""
    ck, cv = write(layer.k, k, layer.fill), write(layer.v, v, layer.fill)
    pos = write_positions(layer.pos, jnp.where(valid, positions, -1), layer.fill)
    out, stats = compact_attention(q, ck, cv, valid, positions, pos, layer.obs, impl)
    fill = layer.fill + jnp.sum(valid, axis=1).astype(jnp.int32)
    return out, CompactLayer(ck, cv, pos, fill, None, stats)
