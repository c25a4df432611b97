"""The evicting prefill through the blockwise compact attention (what "auto" runs on long
prompts) keeps the same positions and ends in the same state as through the dense reference."""

import jax
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.infer.engine import decoding_layout
from andesvl_jax.infer.generate import _kv_arguments
from andesvl_jax.infer.kv import get_policy
from andesvl_jax.infer.kv.prefill import compact_prefill
from andesvl_jax.models.andesvl import AndesVL


def _prefill(impl, policy, ids, lengths, chunk):
    model = decoding_layout(AndesVL(get_preset("tiny", attention_impl=impl), rngs=nnx.Rngs(5)))
    kv, _ = _kv_arguments(
        model, policy, 0.4, ids, lengths, None, None, t=ids.shape[1], chunk=chunk, max_new=4
    )
    graphdef, state = nnx.split(model)
    args = (ids, lengths, None, None, kv["vision"], kv["kv_targets"], kv["kv"], chunk)
    last, cache, kept = jax.jit(lambda state: compact_prefill(graphdef, state, *args))(state)
    return np.asarray(last), [np.asarray(layer.pos) for layer in cache.layers], np.asarray(kept)


@pytest.mark.parametrize("policy", ["multiwindow", "h2o"])  # window and every-query statistics
def test_blockwise_prefill_keeps_what_the_dense_one_keeps(policy):
    ids = np.random.default_rng(1).integers(1, 400, (2, 96)).astype(np.int32)
    lengths = np.array([96, 71], np.int32)  # different lengths: padding in the last chunk
    pol = get_policy(policy, window=8)
    dense = _prefill("xla", pol, ids, lengths, chunk=32)
    blockwise = _prefill("blockwise", pol, ids, lengths, chunk=32)
    np.testing.assert_allclose(blockwise[0], dense[0], atol=1e-5, rtol=1e-5)
    for got, want in zip(blockwise[1], dense[1], strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(blockwise[2], dense[2])
    assert dense[2].min() < 96  # something was evicted
