"""Preference accuracy and mean reward against direct computation on a tiny random model."""

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.patches import pack_images
from andesvl_jax.data.preference import pair_samples
from andesvl_jax.data.preprocess import ImageSpec
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.eval.post_training import mean_reward, preference_accuracy
from andesvl_jax.infer.engine import Engine
from andesvl_jax.models.andesvl import AndesVL


def _logp(model, ex):
    """log pi(answer) of one encoded example, computed without any batching or packing."""
    images = pack_images([[im.pixel_values for im in ex.images]], model.cfg.vision.patch_size)
    logits, _ = model(jnp.asarray(ex.ids[None]), images)
    lp = np.asarray(jnp.log(jnp.exp(logits[0]) / jnp.exp(logits[0]).sum(-1, keepdims=True)))
    return sum(lp[t - 1, ex.ids[t]] for t in range(1, ex.num_tokens) if ex.trainable[t])


def test_preference_accuracy_matches_direct_log_probs():
    model, tok = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(1)), TextTokenizer.default()
    src = SyntheticSource(
        {"preference": 1.0}, size=5, seed=3, split="eval", ctx=TaskContext(56, 84)
    )
    samples = [src[i] for i in range(5)]
    got = preference_accuracy(
        model, tok, samples, image_max_size=84, max_tokens=128, max_patches=64, batch_pairs=2
    )
    spec = EncodeSpec(image=ImageSpec(max_size=84), max_tokens=128, max_patches=64)
    enc = SampleEncoder(tok, spec)
    margins = [_logp(model, enc(c)) - _logp(model, enc(r)) for c, r in map(pair_samples, samples)]
    assert got["n"] == 5
    np.testing.assert_allclose(got["mean_margin"], np.mean(margins), rtol=1e-4)
    assert got["accuracy"] == np.mean(np.asarray(margins) > 0)


def test_mean_reward_scores_greedy_completions():
    """Gold answers set to what the model answers for samples 0 and 2 only: mean 2/3, not 0."""
    model, tok = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(1)), TextTokenizer.default()
    src = SyntheticSource({"count": 1.0}, size=3, seed=3, split="eval", ctx=TaskContext(56, 84))
    engine = Engine(model, tok, image_max_size=84, max_prompt_tokens=128, max_patches=64)
    samples = [src[i] for i in range(3)]
    done = engine.generate(samples, max_new_tokens=3)  # greedy: mean_reward sees the same
    assert all(c.answer for c in done) and done[1].answer != samples[1].meta["answer"]
    gold = [done[0].answer, samples[1].meta["answer"], done[2].answer]
    samples = [
        dataclasses.replace(s, meta={**s.meta, "answer": a, "difficulty": d})
        for s, a, d in zip(samples, gold, ["easy", "hard", "hard"], strict=True)
    ]
    out = mean_reward(engine, samples, {"exact_answer": 1.0}, max_new_tokens=3)
    assert out["n"] == 3
    np.testing.assert_allclose(out["mean_reward"], 2 / 3)
    assert out["per_difficulty"] == {"easy": 1.0, "hard": 0.5}
    assert [e["completion"] for e in out["examples"]] == [c.text for c in done]
    assert [e["reference"] for e in out["examples"]] == gold
