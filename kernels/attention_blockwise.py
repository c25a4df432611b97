"""Blockwise attention in pure XLA: online softmax over KV tiles, blockwise custom VJP, any backend.

The portable memory-efficient path (FlashAttention-2's algorithm written with `lax.scan`): queries
and keys are cut into tiles, each tile's mask is built from the segment ids / positions of its rows
and columns, and only a [block_q, block_k] tile of logits per (batch, head) exists at a time. The
forward keeps the running max and sum in float32 and saves the log-sum-exp; the backward recomputes
each tile's probabilities from it. Peak memory is O(t·h·d + block_q·block_k·h), never O(t·s).
Semantics are exactly those of `attention_ref.xla_attention` (rows with no visible key return 0).

`blockwise_attention_stats` (forward only) also returns, per query head and key, the softmax weights
summed over the queries with a weight each (what KV-cache eviction scores keys by): a second sweep
over the tiles recomputes each tile's probabilities from the saved log-sum-exp, skipping query
tiles whose weights are all zero, so it too holds one [block_q, block_k] tile at a time.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from andesvl_jax.kernels._common import pad_axis, round_up
from jax import lax

# Finite "minus infinity": exp(m_old - m_new) stays NaN-free while a row has seen no visible key.
_NEG = -0.7 * float(np.finfo(np.float32).max)
# Segment ids of the padding this wrapper adds: they match no real id and not each other.
_PAD_Q_SEGMENT = int(np.iinfo(np.int32).min)
_PAD_KV_SEGMENT = _PAD_Q_SEGMENT + 1
DEFAULT_BLOCK = 512


@dataclasses.dataclass(frozen=True)
class _Static:
    """The compile-time part of a call (hashable: a nondiff argument of the custom VJP)."""

    causal: bool
    has_mask: bool
    scale: float
    block_q: int
    block_k: int
    group: int  # query heads per kv head


@dataclasses.dataclass(frozen=True)
class _Rows:
    """Per-token descriptions of one side, tiled: seg, pos [n_blocks, b, block] int32 (pos may be
    None when not causal)."""

    seg: jax.Array
    pos: jax.Array | None


def _tile_mask(st: _Static, qrow, krow, mask, i, j) -> jax.Array:
    """Boolean [b, bq, bk]: which keys of kv tile j the queries of q tile i may see."""
    (qseg, qpos), (kseg, kpos) = qrow, krow
    allowed = qseg[:, :, None] == kseg[:, None, :]
    if st.causal:
        allowed &= kpos[:, None, :] <= qpos[:, :, None]
    if st.has_mask:
        b = mask.shape[0]
        allowed &= lax.dynamic_slice(
            mask, (0, i * st.block_q, j * st.block_k), (b, st.block_q, st.block_k)
        )
    return allowed


def _logits(st: _Static, q_i, k_j, allowed):
    """q_i: [b, kv, bq*g, d], k_j: [b, kv, bk, d] -> masked float32 logits [b, kv, bq*g, bk]."""
    s = jnp.einsum("bkmd,bksd->bkms", q_i, k_j, preferred_element_type=jnp.float32) * st.scale
    return _keep(_expand(st, allowed), s, _NEG)


def _keep(allowed, x, fill: float):
    """x where allowed, else `fill`, with the fill built from x (x * 0 + fill, exact for finite x).

    A `jnp.where(allowed, x, fill)` broadcasts the literal: under grad of a scanned, rematerialised
    layer, partial evaluation sees that broadcast (and a mask from integer ids) as independent of
    the weights, computes it once in the forward and stores one copy per tile as a residual -- the
    [nq, nk, b, h, bq, bk] tensors this kernel exists to avoid (tests/kernels/test_attention_memory.py).
    """
    return lax.select(jnp.broadcast_to(allowed, x.shape), x, x * 0 + fill)


def _expand(st: _Static, allowed):
    """[b, bq, bk] tile mask -> [b, 1, bq*g, bk], rows in the (query, head-in-group) order of q."""
    b, bq, bk = allowed.shape
    rep = jnp.broadcast_to(allowed[:, :, None, :], (b, bq, st.group, bk))
    return rep.reshape(b, 1, bq * st.group, bk)


def _forward(st: _Static, q, k, v, qrows: _Rows, krows: _Rows, mask, visit):
    """q: [nq, b, kv, bq*g, d]; k, v: [nk, b, kv, bk, d]; visit: bool [nq, nk] -> o (q's shape),
    lse [nq, b, kv, bq*g]."""
    nk = k.shape[0]

    def q_block(_, xs):
        q_i, qseg, qpos, visit_i, i = xs
        m0 = jnp.full(q_i.shape[:-1], _NEG, jnp.float32)
        carry0 = (m0, jnp.zeros_like(m0), jnp.zeros(q_i.shape, jnp.float32))

        def kv_block(carry, ys):
            k_j, v_j, kseg, kpos, visit_ij, j = ys

            def update(carry):
                m, l, acc = carry
                # the ids pass a barrier with q, so the tile mask counts as depending on the
                # weights and is rebuilt in the backward rather than stored per tile (`_keep`)
                q_b, rows_b = lax.optimization_barrier((q_i, (qseg, qpos, kseg, kpos)))
                allowed = _tile_mask(st, rows_b[:2], rows_b[2:], mask, i, j)
                s = _logits(st, q_b, k_j, allowed)
                m_new = jnp.maximum(m, s.max(axis=-1))
                alpha = jnp.exp(m - m_new)
                p = _keep(_expand(st, allowed), jnp.exp(s - m_new[..., None]), 0.0)
                pv = jnp.einsum(
                    "bkms,bksd->bkmd", p.astype(v_j.dtype), v_j, preferred_element_type=jnp.float32
                )
                return m_new, alpha * l + p.sum(axis=-1), alpha[..., None] * acc + pv

            return lax.cond(visit_ij, update, lambda c: c, carry), None

        (m, l, acc), _ = lax.scan(
            kv_block, carry0, (k, v, krows.seg, _or_none(krows.pos, nk), visit_i, jnp.arange(nk))
        )
        seen = l > 0
        o = acc / jnp.where(seen, l, 1.0)[..., None]
        lse = jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), 0.0)
        return None, (o.astype(q_i.dtype), lse)

    nq = q.shape[0]
    xs = (q, qrows.seg, _or_none(qrows.pos, nq), visit, jnp.arange(nq))
    _, (o, lse) = lax.scan(q_block, None, xs)
    return o, lse


def _stats(st: _Static, q, k, qrows: _Rows, krows: _Rows, mask, visit, lse, w):
    """Sum over queries of w x softmax weight, per query head: q [nq, b, kv, bq*g, d]; k [nk, b, kv,
    bk, d]; lse [nq, b, kv, bq*g] (from `_forward`); w [nq, n, b, bq] -> [nk, n, b, kv, g, bk]."""
    nq, nk = q.shape[0], k.shape[0]
    n, b, kvh = w.shape[1], k.shape[1], k.shape[2]

    def kv_block(_, xs):
        k_j, kseg, kpos, visit_j, j = xs

        def q_block(acc, ys):
            q_i, lse_i, w_i, qseg, qpos, visit_ij, i = ys

            def add(acc):
                allowed = _tile_mask(st, (qseg, qpos), (kseg, kpos), mask, i, j)
                s = _logits(st, q_i, k_j, allowed)
                p = _keep(_expand(st, allowed), jnp.exp(s - lse_i[..., None]), 0.0)
                # rows are (query, head-in-group); a weighted sum over the queries that XLA fuses
                # with the exp (an [n, bq] @ [bq, g * bk] matmul measured 2x slower on CPU: it
                # materialises p for a 2-row product)
                p = p.reshape(b, kvh, st.block_q, st.group * st.block_k)
                return acc + jnp.sum(w_i[:, :, None, :, None] * p[None], axis=3)

            # a query tile nobody weighs adds nothing: eviction observes a few queries per chunk
            return lax.cond(visit_ij & jnp.any(w_i != 0), add, lambda a: a, acc), None

        acc0 = jnp.zeros((n, b, kvh, st.group * st.block_k), jnp.float32)
        ys = (q, lse, w, qrows.seg, _or_none(qrows.pos, nq), visit_j, jnp.arange(nq))
        acc, _ = lax.scan(q_block, acc0, ys)
        return None, acc.reshape(n, b, kvh, st.group, st.block_k)

    xs = (k, krows.seg, _or_none(krows.pos, nk), visit.T, jnp.arange(nk))
    return lax.scan(kv_block, None, xs)[1]


def _backward(st: _Static, res, do):
    """FlashAttention-2 backward, one pass: outer loop over kv tiles, inner over q tiles."""
    q, k, v, qrows, krows, mask, visit, o, lse = res
    nq, nk = q.shape[0], k.shape[0]
    delta = jnp.sum(o.astype(jnp.float32) * do.astype(jnp.float32), axis=-1)  # [nq, b, kv, m]

    def kv_block(dq, xs):
        k_j, v_j, kseg, kpos, visit_j, j = xs

        def q_block(carry, ys):
            q_i, do_i, lse_i, delta_i, qseg, qpos, visit_ij, i = ys

            def grads(carry):
                dk, dv = carry
                allowed = _tile_mask(st, (qseg, qpos), (kseg, kpos), mask, i, j)
                s = _logits(st, q_i, k_j, allowed)
                p = _keep(_expand(st, allowed), jnp.exp(s - lse_i[..., None]), 0.0)
                dv = dv + jnp.einsum(
                    "bkms,bkmd->bksd",
                    p.astype(do_i.dtype),
                    do_i,
                    preferred_element_type=jnp.float32,
                )
                dp = jnp.einsum("bkmd,bksd->bkms", do_i, v_j, preferred_element_type=jnp.float32)
                ds = (p * (dp - delta_i[..., None]) * st.scale).astype(q_i.dtype)
                dq_i = jnp.einsum("bkms,bksd->bkmd", ds, k_j, preferred_element_type=jnp.float32)
                dk = dk + jnp.einsum("bkms,bkmd->bksd", ds, q_i, preferred_element_type=jnp.float32)
                return (dk, dv), dq_i

            def skip(carry):
                return carry, jnp.zeros(q_i.shape, jnp.float32)

            return lax.cond(visit_ij, grads, skip, carry)

        zeros = jnp.zeros(k_j.shape, jnp.float32)
        (dk_j, dv_j), dq_j = lax.scan(
            q_block,
            (zeros, zeros),
            (q, do, lse, delta, qrows.seg, _or_none(qrows.pos, nq), visit_j, jnp.arange(nq)),
        )
        return dq + dq_j, (dk_j.astype(k.dtype), dv_j.astype(v.dtype))

    dq, (dk, dv) = lax.scan(
        kv_block,
        jnp.zeros(q.shape, jnp.float32),
        (k, v, krows.seg, _or_none(krows.pos, nk), visit.T, jnp.arange(nk)),
    )
    return dq.astype(q.dtype), dk, dv, None, None, None, None


def _or_none(pos, n):
    """Scan needs an array per step: non-causal calls carry a dummy [n] for the unused positions."""
    return jnp.zeros((n,), jnp.int32) if pos is None else pos


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _blockwise(st, q, k, v, qrows, krows, mask, visit):
    return _forward(st, q, k, v, qrows, krows, mask, visit)[0]


def _blockwise_fwd(st, q, k, v, qrows, krows, mask, visit):
    o, lse = _forward(st, q, k, v, qrows, krows, mask, visit)
    return o, (q, k, v, qrows, krows, mask, visit, o, lse)


_blockwise.defvjp(_blockwise_fwd, _backward)
jax.tree_util.register_dataclass(_Rows, data_fields=["seg", "pos"], meta_fields=[])


def _visit(st: _Static, qrows: _Rows, krows: _Rows) -> jax.Array:
    """bool [nq, nk]: may any query of q tile i see a key of kv tile j, in any row of the batch?

    From per-tile summaries (segment id ranges overlap; causal: the tile's first key position is
    not after its last query position), so it is conservative and the in-tile mask stays exact
    for unsorted ids. One small table per call: the loops' `cond` predicates need no per-tile
    reduction over a batch that may be sharded across devices.
    """
    qlo, qhi = qrows.seg.min(-1), qrows.seg.max(-1)  # [nq, b]
    klo, khi = krows.seg.min(-1), krows.seg.max(-1)  # [nk, b]
    visit = (qlo[:, None] <= khi[None]) & (klo[None] <= qhi[:, None])  # [nq, nk, b]
    if st.causal:
        visit &= krows.pos.min(-1)[None] <= qrows.pos.max(-1)[:, None]
    return jnp.any(visit, axis=-1)


def _tiles(x: jax.Array, block: int) -> jax.Array:
    """[b, n, ...] with n a multiple of block -> [n / block, b, block, ...] (the scan axis first)."""
    b, n = x.shape[:2]
    return jnp.moveaxis(x.reshape(b, n // block, block, *x.shape[2:]), 1, 0)


def _rows(seg, pos, n_padded, block, pad_segment) -> _Rows:
    seg = _tiles(pad_axis(seg.astype(jnp.int32), 1, n_padded, pad_segment), block)
    pos = None if pos is None else _tiles(pad_axis(pos.astype(jnp.int32), 1, n_padded), block)
    return _Rows(seg, pos)


def _check(q, k, v, q_segment_ids, kv_segment_ids, causal, q_positions, kv_positions, mask):
    b, t, h, d = q.shape
    s, kvh = k.shape[1], k.shape[2]
    if k.ndim != 4 or v.shape != k.shape or k.shape[0] != b or k.shape[3] != d:
        raise ValueError(
            f"blockwise attention: q {q.shape} needs k, v [b, s, kv, d]; got k "
            f"{k.shape}, v {v.shape}"
        )
    if h % kvh:
        raise ValueError(f"query heads {h} not a multiple of kv heads {kvh}")
    if q_segment_ids.shape != (b, t) or kv_segment_ids.shape != (b, s):
        raise ValueError(
            f"blockwise attention: segment ids must be q [{b}, {t}], kv [{b}, {s}]; "
            f"got {q_segment_ids.shape}, {kv_segment_ids.shape}"
        )
    if causal and (q_positions is None or kv_positions is None):
        raise ValueError("causal attention needs q_positions and kv_positions")
    if mask is not None and jnp.broadcast_shapes(mask.shape, (b, t, s)) != (b, t, s):
        raise ValueError(
            f"blockwise attention: mask {mask.shape} must broadcast to [{b}, {t}, {s}]"
        )


def _prepare(q, k, v, q_segment_ids, kv_segment_ids, q_positions, kv_positions, causal, mask,
             scale, block_q, block_k):  # fmt: skip
    """Tile the arguments: (static, q tiles, k tiles, v tiles, q rows, kv rows, mask, visit)."""
    _check(q, k, v, q_segment_ids, kv_segment_ids, causal, q_positions, kv_positions, mask)
    b, t, h, d = q.shape
    s, kvh = k.shape[1], k.shape[2]
    bq, bk = min(block_q, t), min(block_k, s)
    st = _Static(
        causal, mask is not None, float(d**-0.5 if scale is None else scale), bq, bk, h // kvh
    )
    tp, sp = round_up(t, bq), round_up(s, bk)
    # q rows are (query, head-in-group) pairs so each tile is one [bq*g, d] @ [d, bk] per kv head.
    qt = _tiles(pad_axis(q, 1, tp).reshape(b, tp, kvh, st.group, d), bq)  # [nq, b, bq, kv, g, d]
    qt = jnp.moveaxis(qt, 3, 2).reshape(tp // bq, b, kvh, bq * st.group, d)
    kt, vt = (jnp.moveaxis(_tiles(pad_axis(x, 1, sp), bk), 3, 2) for x in (k, v))
    qrows = _rows(q_segment_ids, q_positions if causal else None, tp, bq, _PAD_Q_SEGMENT)
    krows = _rows(kv_segment_ids, kv_positions if causal else None, sp, bk, _PAD_KV_SEGMENT)
    if mask is not None:
        mask = pad_axis(pad_axis(jnp.broadcast_to(mask, (b, t, s)).astype(bool), 1, tp), 2, sp)
    return st, qt, kt, vt, qrows, krows, mask, _visit(st, qrows, krows)


def _untile(st: _Static, o, t: int) -> jax.Array:
    """o [nq, b, kv, bq*g, d] -> [b, t, h, d]."""
    nq, b, kvh, _, d = o.shape
    o = o.reshape(nq, b, kvh, st.block_q, st.group, d)
    return jnp.moveaxis(o, (0, 1, 2, 3), (1, 0, 3, 2)).reshape(b, nq * st.block_q, -1, d)[:, :t]


@functools.partial(jax.jit, static_argnames=("causal", "scale", "block_q", "block_k"))
def blockwise_attention(
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
    block_q: int = DEFAULT_BLOCK,
    block_k: int = DEFAULT_BLOCK,
) -> jax.Array:
    """Chunked online-softmax attention with GQA. q: [b, t, h, d]; k, v: [b, s, kv, d] -> [b, t, h, d].

    q_segment_ids: [b, t], kv_segment_ids: [b, s]; q_positions / kv_positions: [b, t] / [b, s]
    (needed when causal); mask: optional bool broadcastable to [b, t, s] (sliced per tile). Blocks
    are capped at the sequence lengths; lengths they do not divide are padded with keys nothing sees
    and queries that are dropped. Differentiable in q, k, v with a blockwise backward.
    """
    st, qt, kt, vt, qrows, krows, mask, visit = _prepare(
        q, k, v, q_segment_ids, kv_segment_ids, q_positions, kv_positions, causal, mask, scale,
        block_q, block_k,
    )  # fmt: skip
    return _untile(st, _blockwise(st, qt, kt, vt, qrows, krows, mask, visit), q.shape[1])


@functools.partial(jax.jit, static_argnames=("causal", "scale", "block_q", "block_k"))
def blockwise_attention_stats(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    weights: jax.Array,
    *,
    q_segment_ids: jax.Array,
    kv_segment_ids: jax.Array,
    q_positions: jax.Array | None = None,
    kv_positions: jax.Array | None = None,
    causal: bool = False,
    mask: jax.Array | None = None,
    scale: float | None = None,
    block_q: int = DEFAULT_BLOCK,
    block_k: int = DEFAULT_BLOCK,
) -> tuple[jax.Array, jax.Array]:
    """`blockwise_attention` (forward only) plus the weighted attention statistics -> (o, stats).

    weights: [n, b, t] -> stats [n, b, h, s] float32 = sum_t weights[n, b, t] x softmax[b, h, t, s]
    (query head i of kv head j is h = j * g + i). Memory: one tile of logits at a time, as above.
    """
    b, t, h, _ = q.shape
    if weights.ndim != 3 or weights.shape[1:] != (b, t):
        raise ValueError(
            f"blockwise attention stats: weights {weights.shape} must be [n, {b}, {t}]"
        )
    st, qt, kt, vt, qrows, krows, mask, visit = _prepare(
        q, k, v, q_segment_ids, kv_segment_ids, q_positions, kv_positions, causal, mask, scale,
        block_q, block_k,
    )  # fmt: skip
    o, lse = _forward(st, qt, kt, vt, qrows, krows, mask, visit)
    nq, s = qt.shape[0], k.shape[1]
    w = pad_axis(weights.astype(jnp.float32), 2, nq * st.block_q)
    w = jnp.moveaxis(w.reshape(*w.shape[:2], nq, st.block_q), 2, 0)  # [nq, n, b, bq]
    stats = _stats(st, qt, kt, qrows, krows, mask, visit, lse, w)  # [nk, n, b, kv, g, bk]
    stats = jnp.moveaxis(stats, 0, 4).reshape(weights.shape[0], b, h, -1)[..., :s]
    return _untile(st, o, t), stats
