"""Eviction in the engine: a full budget changes nothing; decoding on the compact cache equals
decoding on the full cache with the evicted positions masked (batch of two prompt lengths, GQA)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.infer.engine import decoding_layout
from andesvl_jax.infer.generate import _prefill, generate
from andesvl_jax.infer.kv import get_policy, plan
from andesvl_jax.infer.kv.prefill import compact_prefill
from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.models.kv_cache import CompactKVCache, CompactLayer

LENGTHS = [64, 45]  # different prompt lengths in one batch


@pytest.fixture(scope="module")
def model():
    return decoding_layout(AndesVL(get_preset("tiny"), rngs=nnx.Rngs(3)))


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(0).integers(1, 400, (2, 64)).astype(np.int32)


KW = dict(max_new_tokens=5, stop_tokens=(), pad_id=0, prefill_chunk=16)
GREEDY = SamplingBatch.of([SamplingParams()] * 2)


@pytest.fixture(scope="module")
def baseline(model, ids):
    return generate(model, ids, LENGTHS, None, GREEDY, **KW).tokens


@pytest.mark.parametrize(
    "name", ["streaming", "h2o", "snapkv", "pyramidkv", "adakv", "multiwindow"]
)
def test_full_budget_is_no_eviction(model, ids, baseline, name):
    pol = get_policy(name, window=0 if name == "streaming" else 8)
    out = generate(model, ids, LENGTHS, None, GREEDY, kv_policy=pol, kv_budget=1.0, **KW)
    np.testing.assert_array_equal(out.tokens, baseline)
    np.testing.assert_allclose(out.kv.kept_tokens, LENGTHS)
    assert out.kv.removed_fraction == 0


def _decode(model, cache, tokens):
    """Teacher-forced decode steps -> logits [steps, b, vocab]."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, token, cache):
        logits, cache = nnx.merge(graphdef, state)(token[:, None], cache=cache)
        return logits[:, -1], cache

    out = []
    for token in tokens:
        logits, cache = step(state, jnp.asarray(token), cache)
        out.append(np.asarray(logits))
    return np.stack(out)


@pytest.mark.parametrize("name", ["snapkv", "adakv"])
def test_compact_decode_equals_masked_full_cache(model, ids, name):
    max_new, chunk = 4, 16
    pol = get_policy(name, window=8, schedule="end")
    p = plan(pol, 0.4, LENGTHS, padded=64, chunk=chunk, max_new=max_new, num_layers=2)
    graphdef, state = nnx.split(model)
    lengths = jnp.asarray(LENGTHS, jnp.int32)
    no_vision = jnp.zeros(ids.shape, bool)
    last, compact, kept = jax.jit(compact_prefill, static_argnames=("graphdef", "setup", "chunk"))(
        graphdef, state, ids, lengths, None, None, no_vision, p.targets, setup=p.setup, chunk=chunk
    )
    full = model.init_cache(2, 64 + max_new)
    full_last, full = jax.jit(_prefill, static_argnames=("graphdef", "chunk"))(
        graphdef, state, ids, lengths, None, None, full, chunk=chunk
    )
    np.testing.assert_allclose(last, full_last, atol=1e-5)  # "end": the prefill itself is exact
    # the full cache with every position the compact cache evicted masked out (position -1)
    layers = []
    for layer, k, v in zip(compact.layers, full.k, full.v, strict=True):
        held = np.asarray(layer.pos)
        slots = np.arange(64 + max_new)
        masked = np.full((held.shape[0], 64 + max_new), -1, np.int32)
        for n in range(held.shape[0]):
            keep = np.isin(slots, held[n][held[n] >= 0])
            masked[n] = np.where(keep, slots, -1)
        layers.append(CompactLayer(k, v, jnp.asarray(masked), lengths))
    masked_cache = CompactKVCache(tuple(layers), lengths)
    evicted = int(sum(np.sum(np.asarray(layer.pos) >= 0) for layer in compact.layers))
    assert evicted < 2 * 2 * 2 * sum(LENGTHS)  # something really was evicted
    tokens = np.random.default_rng(1).integers(1, 400, (max_new, 2)).astype(np.int32)
    ours = _decode(model, compact, tokens)
    reference = _decode(model, masked_cache, tokens)
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)
    unmasked = _decode(model, full, tokens)
    assert np.abs(ours - unmasked).max() > 1e-3  # eviction changed the logits: the check has teeth
