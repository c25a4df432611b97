"""Pallas packed-segment attention (interpret mode) vs the XLA reference: forward and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from andesvl_jax.kernels import dot_product_attention as attention
from andesvl_jax.kernels import packed_attention, xla_attention
from kernel_testing import assert_close

TILES = dict(
    block_q=16, block_k=16
)  # small tiles so 40-long sequences span partial, multi-tile loops


def make_inputs(
    rng, *, b=2, t=40, s=40, h=4, kv=2, d=16, dtype=jnp.float32, causal=True, tree=False
):
    """Packed sequences: sorted segment ids, trailing padding (0), per-segment positions."""
    q = jnp.asarray(rng.normal(size=(b, t, h, d)), dtype)
    k = jnp.asarray(rng.normal(size=(b, s, kv, d)), dtype)
    v = jnp.asarray(rng.normal(size=(b, s, kv, d)), dtype)

    def packed(n):
        seg = np.sort(rng.integers(1, 4, size=(b, n)), axis=1)
        seg[:, n - 3 :] = 0  # trailing padding
        pos = np.zeros_like(seg)
        for i in range(b):
            for j in range(1, n):
                pos[i, j] = pos[i, j - 1] + 1 if seg[i, j] == seg[i, j - 1] else 0
        return jnp.asarray(seg, jnp.int32), jnp.asarray(pos, jnp.int32)

    qseg, qpos = packed(t)
    kseg, kpos = (qseg, qpos) if s == t else packed(s)
    kw = dict(q_segment_ids=qseg, kv_segment_ids=kseg, causal=causal)
    if causal:
        kw |= dict(q_positions=qpos, kv_positions=kpos)
    if tree:
        mask = rng.random((b, t, s)) < 0.6
        mask[:, 5, :] = False  # a row with no allowed key at all
        kw["mask"] = jnp.asarray(mask)
    return (q, k, v), kw


CASES = {
    "causal_packed_gqa": dict(),
    "vit_bidirectional": dict(causal=False, h=4, kv=4),
    "tree_mask_empty_rows": dict(tree=True),
    "decode_against_cache": dict(t=3, s=37, causal=False),
    "mqa_odd_head_dim": dict(h=3, kv=1, d=24, t=21, s=21),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_forward_matches_reference(case, dtype, rng):
    args, kw = make_inputs(rng, dtype=dtype, **CASES[case])
    out = packed_attention(*args, **kw, **TILES)
    assert out.dtype == dtype
    assert_close(out, xla_attention(*args, **kw), dtype)


def test_rows_without_visible_keys_are_zero(rng):
    args, kw = make_inputs(rng, tree=True)
    kw["q_segment_ids"] = kw["q_segment_ids"].at[0, :4].set(9)  # a segment no key has
    out = packed_attention(*args, **kw, **TILES)
    assert float(jnp.abs(out[0, :4]).max()) == 0.0 and float(jnp.abs(out[:, 5]).max()) == 0.0
    assert_close(out, xla_attention(*args, **kw))


@pytest.mark.parametrize("case", ["causal_packed_gqa", "tree_mask_empty_rows", "vit_bidirectional"])
def test_gradients_match_reference(case, rng):
    args, kw = make_inputs(rng, **CASES[case])
    cot = jnp.asarray(rng.normal(size=args[0].shape), jnp.float32)

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v, **kw) * cot)

    got = jax.grad(loss(lambda *a, **k: packed_attention(*a, **k, **TILES)), argnums=(0, 1, 2))(
        *args
    )
    want = jax.grad(loss(xla_attention), argnums=(0, 1, 2))(*args)
    for name, g, w in zip("qkv", got, want, strict=True):
        assert g.shape == w.shape, name
        assert_close(g, w)


def test_registered_impls_agree(rng):
    args, kw = make_inputs(rng, t=20, s=20)
    ref = attention(*args, impl="xla", **kw)
    assert_close(attention(*args, impl="pallas", **kw), ref)
    np.testing.assert_array_equal(attention(*args, impl="auto", **kw), ref)  # auto == xla on CPU


def test_causal_without_positions_is_a_clear_error(rng):
    args, kw = make_inputs(rng, causal=False)
    with pytest.raises(ValueError, match="positions"):
        packed_attention(*args, **kw | dict(causal=True))
