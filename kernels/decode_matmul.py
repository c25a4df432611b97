"""The one Pallas skeleton behind the low-bit and sparse matmuls: decode a weight tile, then MMA.

y[M, N] = (x[M, K] @ decode(W)[K, N]) (* x_scale[M] per token for A8). Grid (M / bm, N / bn); each
program loops over K in tiles of bk, decodes the packed weight tile to [bk, bn] in registers/VMEM,
casts it to the compute dtype and accumulates in float32. The packed operands never touch HBM in
decoded form, which is the point: decode-bound matmuls (M <= 16) are weight-bandwidth bound.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from andesvl_jax.kernels._common import (
    compiler_params,
    pad_axis,
    pick_tile,
    round_up,
    use_interpret,
)
from jax import lax
from jax.experimental import pallas as pl


def _kernel(x_ref, xs_ref, w_refs, o_ref, *, decode, k_per_row, block_k, num_k, compute_dtype):
    """x_ref: [bm, K_pad]; w_refs[i]: [K_pad / k_per_row[i], bn]; o_ref: [bm, bn]."""

    def body(j, acc):
        x = x_ref[:, pl.ds(j * block_k, block_k)].astype(compute_dtype)
        tiles = [
            r[pl.ds(j * (block_k // kpr), block_k // kpr), :]
            for r, kpr in zip(w_refs, k_per_row, strict=True)
        ]
        w = decode(*tiles).astype(compute_dtype)
        return acc + jnp.dot(x, w, preferred_element_type=jnp.float32)

    acc = lax.fori_loop(0, num_k, body, jnp.zeros(o_ref.shape, jnp.float32))
    if xs_ref is not None:  # A8: the per-token scale factors out of the K sum
        acc = acc * xs_ref[...].astype(jnp.float32)[:, None]
    o_ref[...] = acc.astype(o_ref.dtype)


def decode_matmul(
    x: jax.Array,
    x_scale: jax.Array | None,
    operands: Sequence[jax.Array],
    k_per_row: Sequence[int],
    decode: Callable[..., jax.Array],
    *,
    in_features: int,
    compute_dtype,
    out_dtype,
    block_m: int | None = None,
    block_n: int | None = None,
    block_k: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """x: [M, K]; x_scale: [M] or None; operands[i]: [K_pad / k_per_row[i], N] -> [M, N] out_dtype.

    `decode(*row_tiles)` maps the operands' rows for a K tile to the float weight tile [bk, bn].
    Any M, N: padded to the tiles here (zero rows/columns decode to zero weights).
    """
    m, k = x.shape
    if k != in_features:
        raise ValueError(f"x has {k} features, the packed weight expects {in_features}")
    n = operands[0].shape[1]
    k_pad = operands[0].shape[0] * k_per_row[0]
    bk = block_k or 256
    bk = max(bk, *k_per_row)  # a K tile must hold whole rows of every operand
    bm = block_m or pick_tile(m, 64)
    bn = block_n or pick_tile(n, 128)
    kp, mp, np_ = round_up(k_pad, bk), round_up(m, bm), round_up(n, bn)
    xp = pad_axis(pad_axis(x, 1, kp), 0, mp)
    ops = [
        pad_axis(pad_axis(o, 0, kp // kpr), 1, np_)
        for o, kpr in zip(operands, k_per_row, strict=True)
    ]
    interp = use_interpret(interpret)
    xs = None if x_scale is None else pad_axis(x_scale.astype(jnp.float32), 0, mp)
    out = pl.pallas_call(
        functools.partial(
            _kernel,
            decode=decode,
            k_per_row=tuple(k_per_row),
            block_k=bk,
            num_k=kp // bk,
            compute_dtype=compute_dtype,
        ),
        grid=(mp // bm, np_ // bn),
        in_specs=[
            pl.BlockSpec((bm, kp), lambda i, j: (i, 0)),
            None if xs is None else pl.BlockSpec((bm,), lambda i, j: (i,)),
            [pl.BlockSpec((kp // kpr, bn), lambda i, j: (0, j)) for kpr in k_per_row],
        ],
        out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
        out_shape=jax.ShapeDtypeStruct((mp, np_), out_dtype),
        interpret=interp,
        compiler_params=compiler_params(interp),
        name="decode_matmul",
    )(xp, xs, ops)
    return out[:m, :n]
