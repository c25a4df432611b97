"""Blockwise (pure-XLA flash) and cuDNN-wrapper attention vs the XLA reference; the "auto" policy.

Values and gradients for packed segments with padding, causal and bidirectional, GQA/MQA, KV-cache
prefill (t != s, positions offset), tree masks with empty rows and blocks that do not divide the
lengths; that no [t, s]-sized intermediate exists; and the tiny AndesVL with attention_impl =
"blockwise" equals "xla".
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from andesvl_jax.kernels import (
    KERNELS,
    attention_cudnn,
    blockwise_attention,
    dispatch,
    dot_product_attention,
    xla_attention,
)
from flax import nnx
from kernel_testing import assert_close
from test_attention import CASES, make_inputs
from test_model_pallas import inputs as model_inputs

from andesvl_jax.config import get_preset
from andesvl_jax.models.andesvl import AndesVL

TILES = dict(block_q=16, block_k=16)  # 40-long sequences: three tiles, the last one padded


def prefill_inputs(rng, *, b=2, t=12, cached=25, h=4, kv=2, d=16, dtype=jnp.float32):
    """KV-cache prefill: t new queries at positions cached.. of row 0 (row 1 shorter, padded)."""
    s = cached + t
    q = jnp.asarray(rng.normal(size=(b, t, h, d)), dtype)
    k = jnp.asarray(rng.normal(size=(b, s, kv, d)), dtype)
    v = jnp.asarray(rng.normal(size=(b, s, kv, d)), dtype)
    qseg = np.ones((b, t), np.int32)
    qseg[1, -4:] = 0  # row 1 has 8 new tokens and 4 padding queries
    kw = dict(
        q_segment_ids=jnp.asarray(qseg),
        kv_segment_ids=jnp.ones((b, s), jnp.int32),
        q_positions=jnp.broadcast_to(cached + jnp.arange(t, dtype=jnp.int32), (b, t)),
        kv_positions=jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s)),
        causal=True,
    )
    return (q, k, v), kw


def case_inputs(rng, case, dtype=jnp.float32):
    if case == "kv_cache_prefill":
        return prefill_inputs(rng, dtype=dtype)
    return make_inputs(rng, dtype=dtype, **CASES[case])


ALL_CASES = sorted(CASES) + ["kv_cache_prefill"]


def grads(fn, args, kw, cot):
    """(dq, dk, dv) of sum(fn(q, k, v, **kw) * cot), compiled once."""

    def loss(q, k, v):
        return jnp.sum(fn(q, k, v, **kw).astype(jnp.float32) * cot)

    return jax.jit(jax.grad(loss, (0, 1, 2)))(*args)


BF16_CASES = ["causal_packed_gqa", "tree_mask_empty_rows", "kv_cache_prefill"]


@pytest.mark.parametrize(
    ("case", "dtype"),
    [(c, jnp.float32) for c in ALL_CASES] + [(c, jnp.bfloat16) for c in BF16_CASES],
)
def test_forward_matches_reference(case, dtype, rng):
    args, kw = case_inputs(rng, case, dtype)
    out = blockwise_attention(*args, **kw, **TILES)
    assert out.dtype == dtype and out.shape == args[0].shape
    assert_close(out, xla_attention(*args, **kw), dtype)


@pytest.mark.parametrize("case", ALL_CASES)
def test_gradients_match_reference(case, rng):
    args, kw = case_inputs(rng, case)
    cot = jnp.asarray(rng.normal(size=args[0].shape), jnp.float32)
    got = grads(functools.partial(blockwise_attention, **TILES), args, kw, cot)
    want = grads(xla_attention, args, kw, cot)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert_close(g, w)  # float32: within 2e-5 of the largest gradient


def test_bf16_gradients_loosely_match(rng):
    args, kw = make_inputs(rng, dtype=jnp.bfloat16)
    cot = jnp.asarray(rng.normal(size=args[0].shape), jnp.float32)
    got = grads(functools.partial(blockwise_attention, **TILES), args, kw, cot)
    want = grads(xla_attention, [a.astype(jnp.float32) for a in args], kw, cot)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == jnp.bfloat16
        err = float(jnp.max(jnp.abs(g.astype(jnp.float32) - w)))
        assert err <= 5e-2 * float(jnp.max(jnp.abs(w))), err


@pytest.mark.parametrize(("block_q", "block_k"), [(7, 5), (64, 64), (40, 13)])
def test_block_sizes_that_do_not_divide_the_lengths(block_q, block_k, rng):
    args, kw = make_inputs(rng, t=40, s=40)
    out = blockwise_attention(*args, **kw, block_q=block_q, block_k=block_k)
    assert_close(out, xla_attention(*args, **kw))


def test_unsorted_segments_and_positions(rng):
    """Tile skipping uses per-tile id/position ranges; arbitrary ids must still be exact."""
    args, kw = make_inputs(rng, t=40, s=40)
    b, t = kw["q_segment_ids"].shape
    seg = jnp.asarray(rng.integers(0, 4, size=(b, t)), jnp.int32)
    pos = jnp.asarray(rng.permutation(t)[None].repeat(b, 0), jnp.int32)
    kw = kw | dict(q_segment_ids=seg, kv_segment_ids=seg, q_positions=pos, kv_positions=pos)
    assert_close(blockwise_attention(*args, **kw, **TILES), xla_attention(*args, **kw))


def test_rows_without_visible_keys_are_zero_with_zero_gradient(rng):
    args, kw = make_inputs(rng, tree=True)
    kw["q_segment_ids"] = kw["q_segment_ids"].at[0, :4].set(9)  # a segment no key has
    out = blockwise_attention(*args, **kw, **TILES)
    assert float(jnp.abs(out[0, :4]).max()) == 0.0 and float(jnp.abs(out[:, 5]).max()) == 0.0
    dq = grads(functools.partial(blockwise_attention, **TILES), args, kw, jnp.ones(out.shape))[0]
    assert float(jnp.abs(dq[0, :4]).max()) == 0.0


def test_bad_inputs_are_clear_errors(rng):
    args, kw = make_inputs(rng, causal=False)
    with pytest.raises(ValueError, match="positions"):
        blockwise_attention(*args, **kw | dict(causal=True))
    with pytest.raises(ValueError, match="segment ids"):
        blockwise_attention(*args, **kw | dict(q_segment_ids=kw["q_segment_ids"][:, :5]))
    with pytest.raises(ValueError, match="kv heads"):
        blockwise_attention(args[0][:, :, :3], *args[1:], **kw)


def _shapes(jaxpr):
    """Every intermediate shape of a closed jaxpr, sub-jaxprs (scan, cond, custom VJP) included."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield getattr(var.aval, "shape", ())
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _shapes(getattr(inner, "jaxpr", inner))


def _fwd_bwd(fn, t):
    q = jnp.zeros((1, t, 4, 16))
    k = jnp.zeros((1, t, 2, 16))
    seg = jnp.ones((1, t), jnp.int32)
    pos = jnp.arange(t, dtype=jnp.int32)[None]
    kw = dict(q_segment_ids=seg, kv_segment_ids=seg, q_positions=pos, kv_positions=pos, causal=True)
    return jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v, **kw) ** 2), (0, 1, 2)), (q, k, k)


@pytest.mark.parametrize(("impl", "quadratic"), [("blockwise", False), ("xla", True)])
def test_no_score_sized_intermediate(impl, quadratic):
    t = 1024
    fn = functools.partial(blockwise_attention, block_q=128, block_k=128)
    f, args = _fwd_bwd(fn if impl == "blockwise" else xla_attention, t)
    largest = max(int(np.prod(s)) for s in _shapes(jax.make_jaxpr(f)(*args).jaxpr))
    # A [t, s] tensor per head is t*t*4 elements; a blockwise tile is 4*128*128 = t*t/16.
    assert (largest >= t * t) == quadratic, largest


def test_compiled_temp_memory_grows_linearly():
    fn = functools.partial(blockwise_attention, block_q=128, block_k=128)

    def temp(fn, t):
        f, args = _fwd_bwd(fn, t)
        return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes

    small, large = temp(fn, 1024), temp(fn, 2048)
    assert large <= 2.2 * small, (small, large)  # at most linear in t
    ref_small, ref_large = temp(xla_attention, 512), temp(xla_attention, 1024)
    assert ref_large >= 3.5 * ref_small, (ref_small, ref_large)  # the reference: quadratic


def _scanned_decoder_temp(t: int, scan: bool) -> int:
    """Compiled temp bytes of grad wrt the weights of a tiny Qwen3 decoder (2 layers, full remat,
    blockwise attention with 128-tiles) on one causal row of t tokens."""
    from andesvl_jax.models.qwen3 import Qwen3

    cfg = get_preset("tiny").text
    model = nnx.eval_shape(
        lambda: Qwen3(cfg, rngs=nnx.Rngs(0), scan=scan, remat="full", attention_impl="blockwise")
    )
    graphdef, params = nnx.split(model)

    def loss(params, x, pos, seg):
        return nnx.merge(graphdef, params)(x, pos, seg)[0].sum()

    sds = jax.ShapeDtypeStruct
    args = (params, sds((1, t, cfg.hidden_size), jnp.float32), *[sds((1, t), jnp.int32)] * 2)
    compiled = jax.jit(jax.grad(loss)).lower(*args).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_scanned_rematerialised_layers_keep_no_per_tile_residuals(monkeypatch):
    """Under grad of scanned, rematerialised layers, partial evaluation once hoisted the tile
    masks and fill constants (they do not depend on the weights) out of the layer and stored one
    per tile: quadratic memory, 11.7 GiB for one Qwen3-0.6B layer at 8192 tokens against 1.5 GiB
    unscanned. Temp memory must grow linearly in t, scanned as unscanned."""
    fn = functools.partial(blockwise_attention, block_q=128, block_k=128)
    monkeypatch.setitem(KERNELS["attention"], "blockwise", fn)
    small, large = _scanned_decoder_temp(1024, True), _scanned_decoder_temp(2048, True)
    assert large <= 2.2 * small, (small, large)
    assert large <= 1.5 * _scanned_decoder_temp(2048, False), large


def test_auto_policy(monkeypatch):
    q, k = jnp.zeros((1, 4096, 4, 16), jnp.bfloat16), jnp.zeros((1, 4096, 2, 16), jnp.bfloat16)
    small_q = q[:, :64]
    assert dispatch.resolve_attention("auto", small_q, k[:, :64]) == "xla"  # one tile: reference
    assert dispatch.resolve_attention("auto", small_q[:, :1], k) == "xla"  # decode: [1, s] scores
    assert dispatch.resolve_attention("auto", q, k) == "blockwise"
    for backend in ("gpu", "tpu", "cuda"):  # nothing custom has run on a device: portable path
        monkeypatch.setattr(jax, "default_backend", lambda b=backend: b)
        assert dispatch.resolve_attention("auto", q, k) == "blockwise"
    monkeypatch.setitem(dispatch.VALIDATED, "gpu", {"attention": frozenset({"cudnn", "pallas"})})
    assert dispatch.resolve_attention("auto", q, k) == "cudnn"
    # cuDNN cannot take float32: "auto" moves on to the next validated impl instead of failing.
    assert dispatch.resolve_attention("auto", q.astype(jnp.float32), k.astype(jnp.float32)) == (
        "pallas"
    )
    assert dispatch.resolve_attention("blockwise", q, k) == "blockwise"
    with pytest.raises(ValueError, match="unknown attention impl"):
        dispatch.resolve_attention("flash", q, k)


def test_dispatch_runs_the_resolved_impl(rng):
    args, kw = make_inputs(rng, t=20, s=20)
    ref = xla_attention(*args, **kw)
    np.testing.assert_array_equal(dot_product_attention(*args, impl="auto", **kw), ref)
    assert_close(dot_product_attention(*args, impl="blockwise", **kw), ref)


def test_cudnn_is_a_clear_error_off_gpu(rng):
    args, kw = make_inputs(rng, dtype=jnp.bfloat16)
    with pytest.raises(NotImplementedError, match="'cudnn' needs a CUDA GPU"):
        attention_cudnn.cudnn_attention(*args, **kw)


@pytest.mark.parametrize("case", ["causal_packed_gqa", "tree_mask_empty_rows", "kv_cache_prefill"])
def test_cudnn_mask_mapping_matches_reference(case, rng, monkeypatch):
    """Our translation to jax.nn.dot_product_attention (mask, even-length padding, empty rows),
    run through its XLA backend here: cuDNN itself is checked by benchmarks/device_check.sh."""
    monkeypatch.setattr(attention_cudnn, "IMPLEMENTATION", "xla")
    monkeypatch.setattr(attention_cudnn, "cudnn_unsupported", lambda q, k: None)
    args, kw = case_inputs(rng, case)
    if case == "causal_packed_gqa":  # odd lengths: exercises the padding to even t, s
        args = tuple(a[:, :39] for a in args)
        kw = {n: (x[:, :39] if hasattr(x, "shape") else x) for n, x in kw.items()}
    assert_close(attention_cudnn.cudnn_attention(*args, **kw), xla_attention(*args, **kw))
    cot = jnp.asarray(rng.normal(size=args[0].shape), jnp.float32)
    got = grads(attention_cudnn.cudnn_attention, args, kw, cot)
    for g, w in zip(got, grads(xla_attention, args, kw, cot), strict=True):
        assert_close(g, w)


def _model(impl):
    return AndesVL(get_preset("tiny", attention_impl=impl), rngs=nnx.Rngs(0))


@pytest.fixture
def small_tiles(monkeypatch):
    """'blockwise' with tiles smaller than the tiny model's sequences (several tiles, padding)."""
    fn = functools.partial(blockwise_attention, block_q=8, block_k=8)
    monkeypatch.setitem(KERNELS["attention"], "blockwise", fn)


def test_tiny_andesvl_forward_matches_xla(small_tiles):
    """Both towers: bidirectional packed ViT images, causal packed LLM samples with padding."""
    logits = []
    for name in ("blockwise", "xla"):
        model = _model(name)
        ids, images, seg, pos = model_inputs(model.cfg, np.random.default_rng(0))
        out, _ = model(ids, images, segment_ids=seg, positions=pos)
        logits.append(np.asarray(out)[np.asarray(seg) != 0])  # padding attends to padding
    assert_close(*logits)


def test_tiny_andesvl_kv_cache_decoding_matches_xla(small_tiles):
    ids = jnp.asarray([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]], jnp.int32)
    outs = []
    for name in ("blockwise", "xla"):
        model = _model(name)
        cache = model.init_cache(2, 16)
        logits, cache = model(ids, cache=cache)
        step, _ = model(jnp.argmax(logits[:, -1:], -1).astype(jnp.int32), cache=cache)
        outs.append((logits, step))
    for got, want in zip(*outs, strict=True):
        assert_close(got, want)
