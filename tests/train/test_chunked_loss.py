"""Chunked LM head + loss (train/chunked_loss.py): equal to the full-logit losses in value and
gradient (tied and untied heads, z-loss, chunks that do not divide t, temperature), wired into the
objectives, and its compiled fwd+bwd memory does not grow with t x vocab."""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.data import DataConfig, TextTokenizer, make_dataset
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.models.layers import Embed, Linear
from andesvl_jax.train.chunked_loss import map_head_chunks
from andesvl_jax.train.grpo import GRPOConfig
from andesvl_jax.train.losses import chunked_next_token_loss, next_token_loss
from andesvl_jax.train.objectives import grpo_objective, mpo_objective, next_token_objective
from andesvl_jax.train.sequence_logprobs import chunked_token_logprobs, token_logprobs

B, T, D, V = 2, 37, 16, 50
TOL = dict(rtol=1e-5, atol=1e-5)


def _head(tied: bool):
    rngs = nnx.Rngs(0)
    if tied:
        module = Embed(V, D, rngs=rngs)
        return module, lambda m, h: m.attend(h).astype(jnp.float32)
    module = Linear(D, V, axes=("embed", "vocab"), bias=True, rngs=rngs)
    return module, lambda m, h: m(h).astype(jnp.float32)


def _inputs(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    hidden = 3.0 * jax.random.normal(k[0], (B, T, D))  # large logits: z-loss matters
    targets = jax.random.randint(k[1], (B, T), 0, V)
    mask = (jax.random.uniform(k[2], (B, T)) > 0.3).astype(jnp.float32)
    return hidden, targets, mask


def _assert_trees_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("chunk", [5, 8, 36])  # 37 = 7*5+2 = 4*8+5 = 36+1: none divides t
def test_chunked_next_token_loss_equals_full_loss_and_gradients(tied, chunk):
    module, apply = _head(tied)
    graphdef, params = nnx.split(module)
    hidden, targets, mask = _inputs()

    def full(params, hidden):
        logits = apply(nnx.merge(graphdef, params), hidden)
        total, stats = next_token_loss(logits, targets, mask, z_loss=0.1)
        return total, stats

    def chunked(params, hidden):
        head = nnx.merge(graphdef, params)
        return chunked_next_token_loss(
            lambda h: apply(head, h), hidden, targets, mask, 0.1, chunk=chunk
        )

    grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))  # noqa: E731
    (want, want_stats), want_grads = grad(full)(params, hidden)
    (got, got_stats), got_grads = grad(chunked)(params, hidden)
    np.testing.assert_allclose(got, want, **TOL)
    assert set(got_stats) == set(want_stats) == {"ce_sum", "tokens", "correct"}
    for key in want_stats:
        np.testing.assert_allclose(got_stats[key], want_stats[key], **TOL)
    # z-loss is in the total: total - ce_sum = 0.1 * sum(lse^2) > 0, in both
    assert float(want - want_stats["ce_sum"]) > 1.0
    assert float(want_stats["correct"]) > 0  # accuracy is counted, not trivially zero
    _assert_trees_close(got_grads, want_grads)


@pytest.mark.parametrize("tied", [True, False])
def test_chunked_token_logprobs_with_temperature_equal_full(tied):
    module, apply = _head(tied)
    graphdef, params = nnx.split(module)
    hidden, targets, mask = _inputs(1)

    def value(chunk):
        def f(params, hidden):
            head = nnx.merge(graphdef, params)
            if chunk is None:
                lp = token_logprobs(apply(head, hidden), targets, 0.7)
            else:
                lp = chunked_token_logprobs(
                    lambda h: apply(head, h), hidden, targets, 0.7, chunk=chunk
                )
            return jnp.sum(lp * mask), lp

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(params, hidden)

    (want, want_lp), want_g = value(None)
    (got, got_lp), got_g = value(10)
    assert got_lp.shape == (B, T)
    np.testing.assert_allclose(got_lp, want_lp, **TOL)
    np.testing.assert_allclose(got, want, **TOL)
    _assert_trees_close(got_g, want_g)


def test_bad_shapes_and_chunks_are_clear_errors():
    hidden, targets, _ = _inputs()
    head = lambda h: h @ jnp.ones((D, V))  # noqa: E731
    with pytest.raises(ValueError, match=r"per-token input 0 has shape \(2, 36\)"):
        map_head_chunks(lambda lg, t: lg, head, hidden, targets[:, :36], chunk=8)
    with pytest.raises(ValueError, match="hidden must be \\[b, t, d\\]"):
        map_head_chunks(lambda lg: lg, head, hidden[0], chunk=8)
    with pytest.raises(ValueError, match="loss chunk must be >= 0"):
        map_head_chunks(lambda lg: lg, head, hidden, chunk=-1)


# ---- the objectives on a tiny AndesVL, tied and untied ----------------------------------------


class RolloutLike(NamedTuple):
    input_ids: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray
    images: object
    old_logprobs: np.ndarray
    advantages: np.ndarray
    rewards: np.ndarray


@pytest.fixture(scope="module")
def pair_batch():
    cfg = DataConfig(stage="mpo", batch_size=4, max_tokens=96, max_patches=64, image_max_size=84)
    src = SyntheticSource({"preference": 1.0}, size=16, seed=0, ctx=TaskContext(56, 84))
    b = next(iter(make_dataset(src, cfg, TextTokenizer.default(), 0, 1)))
    rng = np.random.default_rng(0)
    n, t = b.input_ids.shape
    return RolloutLike(
        *b,
        old_logprobs=rng.normal(-3.0, 0.3, (n, t)).astype(np.float32),
        advantages=rng.normal(size=(n,)).astype(np.float32),
        rewards=rng.uniform(size=(n,)).astype(np.float32),
    )


OBJECTIVE_FACTORIES = {
    "next_token": lambda chunk: next_token_objective(1e-3, chunk),
    "mpo": lambda chunk: mpo_objective(loss_chunk=chunk),
    "grpo": lambda chunk: grpo_objective(GRPOConfig(group_size=2, temperature=0.8), chunk),
}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("name", sorted(OBJECTIVE_FACTORIES))
def test_objectives_chunked_equal_unchunked(pair_batch, name, tied):
    cfg = get_preset("tiny")
    cfg = cfg.replace(text=dataclasses.replace(cfg.text, tie_embeddings=tied)).validate()
    graphdef, params = nnx.split(AndesVL(cfg, rngs=nnx.Rngs(0)))
    assert (nnx.merge(graphdef, params).llm.lm_head is None) == tied

    def run(chunk):
        objective = OBJECTIVE_FACTORIES[name](chunk)
        extra = objective.init_extra(params)
        if "reference" in extra:  # a reference that differs from the policy
            extra["reference"] = jax.tree.map(lambda x: x * 0.9, extra["reference"])

        def f(params):
            model = nnx.merge(graphdef, params)
            ref = nnx.merge(graphdef, extra["reference"]) if "reference" in extra else None
            return objective.loss(model, ref, pair_batch, extra)

        return jax.jit(jax.value_and_grad(f, has_aux=True))(params)

    (want, want_stats), want_g = run(None)
    (got, got_stats), got_g = run(40)  # t = 96 = 2 * 40 + 16
    np.testing.assert_allclose(got, want, **TOL)
    _assert_trees_close(got_stats, want_stats)
    _assert_trees_close(got_g, want_g)
    head = want_g["llm"]["embed" if tied else "lm_head"]
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(head)) > 0


# ---- memory -----------------------------------------------------------------------------------


def _fwd_bwd_temp_bytes(t: int, vocab: int, chunk: int | None) -> int:
    d = 64
    hidden = jax.ShapeDtypeStruct((1, t, d), jnp.float32)
    weight = jax.ShapeDtypeStruct((vocab, d), jnp.float32)
    ids = jax.ShapeDtypeStruct((1, t), jnp.int32)
    mask = jax.ShapeDtypeStruct((1, t), jnp.float32)

    def loss(weight, hidden, targets, mask):
        head = lambda h: h @ weight.T  # noqa: E731
        if chunk is None:
            return next_token_loss(head(hidden), targets, mask, 1e-4)[0]
        return chunked_next_token_loss(head, hidden, targets, mask, 1e-4, chunk=chunk)[0]

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(weight, hidden, ids, mask).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_chunked_fwd_bwd_memory_does_not_scale_with_t_times_vocab():
    vocab, t = 32_768, 4096
    full = _fwd_bwd_temp_bytes(t, vocab, None)
    chunked = _fwd_bwd_temp_bytes(t, vocab, 512)
    logits_bytes = t * vocab * 4
    assert full >= logits_bytes  # the full loss holds at least one [t, vocab] fp32 tensor
    assert chunked < full / 4, (chunked, full)
    # doubling t leaves the chunked temporaries about flat (O(chunk x vocab) + O(t x d))
    longer = _fwd_bwd_temp_bytes(2 * t, vocab, 512)
    assert longer - chunked < logits_bytes / 8, (longer, chunked)
