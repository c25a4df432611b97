"""Packed-segment flash attention (Pallas): online softmax over KV tiles, GQA, custom VJP.

Semantics are exactly those of `andesvl_jax.kernels.attention_ref.xla_attention`, the pure-jnp reference
this kernel is tested against: a query sees a key iff their segment ids are equal, and (causal) the
key's position <= the query's, and (mask) the extra boolean mask allows it; rows with no visible key
return zeros. Tiling and the tile-skipping rule: docs/kernels.md.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from andesvl_jax.kernels._common import (
    compiler_params,
    next_power_of_2,
    pad_axis,
    pick_tile,
    round_up,
    use_interpret,
)
from jax import lax
from jax.experimental import pallas as pl

# Finite "minus infinity": keeps exp(m_old - m_new) NaN-free while a row has seen no visible key.
_NEG = -0.7 * float(np.finfo(np.float32).max)
# Segment ids given to padding added by this wrapper: they match no real id and not each other.
_PAD_Q_SEGMENT = int(np.iinfo(np.int32).min)
_PAD_KV_SEGMENT = _PAD_Q_SEGMENT + 1


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything about a call that is compile-time: hashable, passed as a nondiff argument."""

    causal: bool
    has_mask: bool
    scale: float
    block_q: int
    block_k: int
    group: int  # query heads per kv head
    interpret: bool


def _visible(st: _Static, qseg, kseg, qpos, kpos, mask_ref, k_slice):
    """Boolean [block_q, block_k] tile of the attention mask, built from its description."""
    allowed = qseg[:, None] == kseg[k_slice][None, :]
    if st.causal:
        allowed &= kpos[k_slice][None, :] <= qpos[:, None]
    if st.has_mask:
        allowed &= mask_ref[:, k_slice] != 0
    return allowed


def _fwd_kernel(
    lo_ref,
    hi_ref,
    q_ref,
    k_ref,
    v_ref,
    qseg_ref,
    kseg_ref,
    qpos_ref,
    kpos_ref,
    mask_ref,
    o_ref,
    lse_ref,
    *,
    st: _Static,
):
    """One (batch, head, q-tile): q_ref [bq, d]; k_ref, v_ref [S, d] (whole padded sequence)."""
    q = q_ref[...]
    qseg = qseg_ref[...]
    qpos = qpos_ref[...] if st.causal else None
    bq, d = q.shape

    def body(j, carry):
        acc, m, l = carry
        ks = pl.ds(j * st.block_k, st.block_k)
        k, v = k_ref[ks, :], v_ref[ks, :]
        s = jnp.dot(q, k.T, preferred_element_type=jnp.float32) * st.scale
        allowed = _visible(st, qseg, kseg_ref, qpos, kpos_ref, mask_ref, ks)
        m_new = jnp.maximum(m, jnp.max(jnp.where(allowed, s, _NEG), axis=-1))
        p = jnp.where(allowed, jnp.exp(s - m_new[:, None]), 0.0)
        alpha = jnp.exp(m - m_new)
        l = alpha * l + jnp.sum(p, axis=-1)
        acc = alpha[:, None] * acc + jnp.dot(
            p.astype(v.dtype), v, preferred_element_type=jnp.float32
        )
        return acc, m_new, l

    init = (
        jnp.zeros((bq, d), jnp.float32),
        jnp.full((bq,), _NEG, jnp.float32),
        jnp.zeros((bq,), jnp.float32),
    )
    acc, m, l = lax.fori_loop(lo_ref[0], hi_ref[0], body, init)
    empty = l == 0.0
    o_ref[...] = (acc / jnp.where(empty, 1.0, l)[:, None]).astype(o_ref.dtype)
    # Empty rows: any finite lse works, the backward masks their probabilities to zero anyway.
    lse_ref[...] = jnp.where(empty, 0.0, m + jnp.log(jnp.where(empty, 1.0, l)))


def _dq_kernel(
    lo_ref,
    hi_ref,
    q_ref,
    k_ref,
    v_ref,
    qseg_ref,
    kseg_ref,
    qpos_ref,
    kpos_ref,
    mask_ref,
    do_ref,
    lse_ref,
    delta_ref,
    dq_ref,
    *,
    st: _Static,
):
    """dQ for one (batch, head, q-tile), over the visible KV tiles (FlashAttention-2)."""
    q, do = q_ref[...], do_ref[...]
    lse, delta = lse_ref[...], delta_ref[...]
    qseg = qseg_ref[...]
    qpos = qpos_ref[...] if st.causal else None

    def body(j, dq):
        ks = pl.ds(j * st.block_k, st.block_k)
        k, v = k_ref[ks, :], v_ref[ks, :]
        s = jnp.dot(q, k.T, preferred_element_type=jnp.float32) * st.scale
        allowed = _visible(st, qseg, kseg_ref, qpos, kpos_ref, mask_ref, ks)
        p = jnp.where(allowed, jnp.exp(s - lse[:, None]), 0.0)
        dp = jnp.dot(do, v.T, preferred_element_type=jnp.float32)
        ds = p * (dp - delta[:, None])
        return dq + jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

    dq = lax.fori_loop(lo_ref[0], hi_ref[0], body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * st.scale).astype(dq_ref.dtype)


def _dkv_kernel(
    lo_ref,
    hi_ref,
    q_ref,
    k_ref,
    v_ref,
    qseg_ref,
    kseg_ref,
    qpos_ref,
    kpos_ref,
    mask_ref,
    do_ref,
    lse_ref,
    delta_ref,
    dk_ref,
    dv_ref,
    *,
    st: _Static,
):
    """dK, dV for one (batch, kv head, kv-tile): q_ref, do_ref [T, group, d]; lse, delta [group, T].

    The query heads of a GQA group are summed here, so dK/dV never exist per query head.
    """
    k, v = k_ref[...], v_ref[...]
    kseg_tile = kseg_ref[...]
    kpos_tile = kpos_ref[...] if st.causal else None
    full = slice(None)

    def head_body(g):
        def body(i, carry):
            dk, dv = carry
            qs = pl.ds(i * st.block_q, st.block_q)
            q, do = q_ref[qs, g, :], do_ref[qs, g, :]
            lse, delta = lse_ref[g, qs], delta_ref[g, qs]
            s = jnp.dot(q, k.T, preferred_element_type=jnp.float32) * st.scale
            allowed = qseg_ref[qs][:, None] == kseg_tile[None, :]
            if st.causal:
                allowed &= kpos_tile[None, :] <= qpos_ref[qs][:, None]
            if st.has_mask:
                allowed &= mask_ref[qs, full] != 0
            p = jnp.where(allowed, jnp.exp(s - lse[:, None]), 0.0)
            dv = dv + jnp.dot(p.T.astype(do.dtype), do, preferred_element_type=jnp.float32)
            dp = jnp.dot(do, v.T, preferred_element_type=jnp.float32)
            ds = p * (dp - delta[:, None])
            dk = dk + jnp.dot(ds.T.astype(q.dtype), q, preferred_element_type=jnp.float32)
            return dk, dv

        return body

    carry = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
    for g in range(st.group):  # static unroll: group is 1-8
        carry = lax.fori_loop(lo_ref[0], hi_ref[0], head_body(g), carry)
    dk, dv = carry
    dk_ref[...] = (dk * st.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _tile_ranges(st: _Static, qseg, kseg, qpos, kpos):
    """Per q-tile [lo, hi) KV-tile range and per KV-tile [lo, hi) q-tile range, each [b, n] int32.

    A tile pair is skipped only when its segment-id ranges do not overlap, or (causal) every key is
    after every query; this is conservative (the in-tile mask does the exact work), and for packed
    sequences with increasing segment ids it confines each tile to its own segments' neighbourhood.
    """
    b = qseg.shape[0]

    def summary(x, pad_value, tile):
        x = x.reshape(b, -1, tile)
        valid = x != pad_value
        big = jnp.iinfo(jnp.int32).max
        return (jnp.min(jnp.where(valid, x, big), -1), jnp.max(jnp.where(valid, x, -big), -1))

    qmin, qmax = summary(qseg, _PAD_Q_SEGMENT, st.block_q)
    kmin, kmax = summary(kseg, _PAD_KV_SEGMENT, st.block_k)
    vis = (kmin[:, None, :] <= qmax[:, :, None]) & (qmin[:, :, None] <= kmax[:, None, :])
    if st.causal:
        q_last = jnp.max(qpos.reshape(b, -1, st.block_q), -1)
        k_first = jnp.min(kpos.reshape(b, -1, st.block_k), -1)
        vis &= k_first[:, None, :] <= q_last[:, :, None]

    def first_last(v):  # v: [b, rows, cols] -> lo, hi over cols, [b, rows]
        any_ = jnp.any(v, -1)
        cols = v.shape[-1]
        lo = jnp.argmax(v, -1)
        hi = cols - jnp.argmax(v[..., ::-1], -1)
        return (jnp.where(any_, lo, 0).astype(jnp.int32), jnp.where(any_, hi, 0).astype(jnp.int32))

    return first_last(vis), first_last(jnp.swapaxes(vis, 1, 2))


def _specs(st: _Static, shapes):
    """BlockSpecs of the shared inputs (q, k, v, ids, positions, mask) for the grid (b, h, i)."""
    sp, d = shapes
    g = st.group
    qtile = pl.BlockSpec((None, st.block_q, None, d), lambda b, h, i: (b, i, h, 0))
    kvfull = pl.BlockSpec((None, sp, None, d), lambda b, h, i: (b, 0, h // g, 0))
    rng = pl.BlockSpec((None, 1), lambda b, h, i: (b, i))
    qrow = pl.BlockSpec((None, st.block_q), lambda b, h, i: (b, i))
    krow = pl.BlockSpec((None, sp), lambda b, h, i: (b, 0))
    return dict(
        rng=rng,
        q=qtile,
        kv=kvfull,
        qrow=qrow,
        krow=krow,
        pos=(qrow, krow) if st.causal else (None, None),
        mask=pl.BlockSpec((None, st.block_q, sp), lambda b, h, i: (b, i, 0))
        if st.has_mask
        else None,
        lse=pl.BlockSpec((None, None, st.block_q), lambda b, h, i: (b, h, i)),
    )


def _forward(st: _Static, q, k, v, qseg, kseg, qpos, kpos, mask, ranges):
    b, tp, h, d = q.shape
    sp = k.shape[1]
    (lo, hi), _ = ranges
    s = _specs(st, (sp, d))
    return pl.pallas_call(
        functools.partial(_fwd_kernel, st=st),
        grid=(b, h, tp // st.block_q),
        in_specs=[
            s["rng"],
            s["rng"],
            s["q"],
            s["kv"],
            s["kv"],
            s["qrow"],
            s["krow"],
            *s["pos"],
            s["mask"],
        ],
        out_specs=[s["q"], s["lse"]],
        out_shape=[
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((b, h, tp), jnp.float32),
        ],
        interpret=st.interpret,
        compiler_params=compiler_params(st.interpret, num_warps=4 if d <= 64 else 8),
        name="packed_attention_fwd",
    )(lo, hi, q, k, v, qseg, kseg, qpos, kpos, mask)


def _backward(st: _Static, res, do):
    q, k, v, qseg, kseg, qpos, kpos, mask, ranges, o, lse = res
    b, tp, h, d = q.shape
    sp, kvh = k.shape[1], k.shape[2]
    (lo, hi), (qlo, qhi) = ranges
    delta = jnp.einsum("bthd,bthd->bht", o.astype(jnp.float32), do.astype(jnp.float32))
    s = _specs(st, (sp, d))
    params = compiler_params(st.interpret, num_warps=4 if d <= 64 else 8)
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, st=st),
        grid=(b, h, tp // st.block_q),
        in_specs=[
            s["rng"],
            s["rng"],
            s["q"],
            s["kv"],
            s["kv"],
            s["qrow"],
            s["krow"],
            *s["pos"],
            s["mask"],
            s["q"],
            s["lse"],
            s["lse"],
        ],
        out_specs=s["q"],
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        interpret=st.interpret,
        compiler_params=params,
        name="packed_attention_dq",
    )(lo, hi, q, k, v, qseg, kseg, qpos, kpos, mask, do, lse, delta)

    # dK/dV grid: (batch, kv head, kv tile); each program reads the whole query side of its group.
    g, bk = st.group, st.block_k
    qgroup = pl.BlockSpec((None, tp, g, d), lambda b_, j, c: (b_, 0, j, 0))
    ktile = pl.BlockSpec((None, bk, None, d), lambda b_, j, c: (b_, c, j, 0))
    stat = pl.BlockSpec((None, g, tp), lambda b_, j, c: (b_, j, 0))
    qrow = pl.BlockSpec((None, tp), lambda b_, j, c: (b_, 0))
    krow = pl.BlockSpec((None, bk), lambda b_, j, c: (b_, c))
    rng = pl.BlockSpec((None, 1), lambda b_, j, c: (b_, c))
    mspec = pl.BlockSpec((None, tp, bk), lambda b_, j, c: (b_, 0, c)) if st.has_mask else None
    pos = (qrow, krow) if st.causal else (None, None)
    dk, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, st=st),
        grid=(b, kvh, sp // bk),
        in_specs=[rng, rng, qgroup, ktile, ktile, qrow, krow, *pos, mspec, qgroup, stat, stat],
        out_specs=[ktile, ktile],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        interpret=st.interpret,
        compiler_params=params,
        name="packed_attention_dkv",
    )(qlo, qhi, q, k, v, qseg, kseg, qpos, kpos, mask, do, lse, delta)
    return dq, dk, dv, None, None, None, None, None, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(st, q, k, v, qseg, kseg, qpos, kpos, mask, ranges):
    return _forward(st, q, k, v, qseg, kseg, qpos, kpos, mask, ranges)[0]


def _flash_fwd(st, q, k, v, qseg, kseg, qpos, kpos, mask, ranges):
    o, lse = _forward(st, q, k, v, qseg, kseg, qpos, kpos, mask, ranges)
    return o, (q, k, v, qseg, kseg, qpos, kpos, mask, ranges, o, lse)


_flash.defvjp(_flash_fwd, _backward)


@functools.partial(jax.jit, static_argnames=("causal", "scale", "block_q", "block_k", "interpret"))
def packed_attention(
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
    block_q: int | None = None,
    block_k: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """Flash attention over packed segments. q: [b, t, h, d]; k, v: [b, s, kv, d] -> [b, t, h, d].

    q_segment_ids: [b, t], kv_segment_ids: [b, s] int32; q_positions: [b, t], kv_positions: [b, s]
    (needed when causal); mask: optional bool [b, t, s]. Any t, s, d: inputs are padded to the tiles
    (block_q x block_k, powers of two) and the padding is made invisible. Differentiable in q, k, v.
    """
    b, t, h, d = q.shape
    s, kvh = k.shape[1], k.shape[2]
    if h % kvh:
        raise ValueError(f"query heads {h} not a multiple of kv heads {kvh}")
    if causal and (q_positions is None or kv_positions is None):
        raise ValueError("causal attention needs q_positions and kv_positions")
    st = _Static(
        causal=causal,
        has_mask=mask is not None,
        scale=float(d**-0.5 if scale is None else scale),
        block_q=block_q or pick_tile(t, 64),
        block_k=block_k or pick_tile(s, 64),
        group=h // kvh,
        interpret=use_interpret(interpret),
    )
    tp, sp, dp = round_up(t, st.block_q), round_up(s, st.block_k), max(16, next_power_of_2(d))
    qp = pad_axis(pad_axis(q, 1, tp), 3, dp)
    kp = pad_axis(pad_axis(k, 1, sp), 3, dp)
    vp = pad_axis(pad_axis(v, 1, sp), 3, dp)
    qseg = pad_axis(q_segment_ids.astype(jnp.int32), 1, tp, _PAD_Q_SEGMENT)
    kseg = pad_axis(kv_segment_ids.astype(jnp.int32), 1, sp, _PAD_KV_SEGMENT)
    qpos = kpos = None
    if causal:
        qpos = pad_axis(q_positions.astype(jnp.int32), 1, tp)
        kpos = pad_axis(kv_positions.astype(jnp.int32), 1, sp)
    maskp = None
    if mask is not None:
        maskp = pad_axis(pad_axis(jnp.broadcast_to(mask, (b, t, s)).astype(jnp.int8), 1, tp), 2, sp)
    ranges = _tile_ranges(st, qseg, kseg, qpos, kpos)
    out = _flash(st, qp, kp, vp, qseg, kseg, qpos, kpos, maskp, ranges)
    return out[:, :t, :, :d]
