"""What MPO and GRPO are meant to move, measured on held-out samples.

* preference accuracy: the fraction of preference pairs whose chosen answer the model finds more
  likely than the rejected one (log pi(chosen|x) > log pi(rejected|x)), and the mean margin;
* mean reward: the GRPO reward of greedy completions (the registry in train/rewards.py).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx

from andesvl_jax.data.encode import answer_only_encoder
from andesvl_jax.data.packing import assemble_batch
from andesvl_jax.data.preference import pair_samples
from andesvl_jax.data.sample import Sample
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.engine import Engine
from andesvl_jax.train.rewards import combined_reward
from andesvl_jax.train.sequence_logprobs import batch_token_logprobs, sequence_logprob


@functools.partial(jax.jit, static_argnums=0)
def _row_logprobs(graphdef, state, batch):
    logps = batch_token_logprobs(nnx.merge(graphdef, state), batch)
    return sequence_logprob(logps, batch.loss_mask)


def preference_accuracy(
    model,
    tokenizer: TextTokenizer,
    samples: list[Sample],
    *,
    image_max_size: int = 448,
    max_tokens: int = 512,
    max_patches: int = 1024,
    batch_pairs: int = 16,
) -> dict:
    """Share of pairs with log pi(chosen) > log pi(rejected); mean margin in nats per pair."""
    cfg = model.cfg
    encoder = answer_only_encoder(
        cfg, tokenizer, image_max_size=image_max_size, max_tokens=max_tokens,
        max_patches=max_patches,
    )  # fmt: skip
    graphdef, state = nnx.split(model)
    margins = []
    for start in range(0, len(samples), batch_pairs):
        chunk = samples[start : start + batch_pairs]
        rows = [[encoder(s)] for sample in chunk for s in pair_samples(sample)]
        rows += [rows[-1]] * (2 * batch_pairs - len(rows))  # one compiled shape
        batch = assemble_batch(
            rows, max_tokens, max_patches, tokenizer.special_tokens, cfg.vision.patch_size
        )
        logp = np.asarray(_row_logprobs(graphdef, state, batch))[: 2 * len(chunk)]
        margins += list(logp[0::2] - logp[1::2])
    margins = np.asarray(margins)
    return {
        "accuracy": float(np.mean(margins > 0)),
        "mean_margin": float(np.mean(margins)),
        "n": len(margins),
    }


def mean_reward(
    engine: Engine,
    samples: list[Sample],
    rewards: dict[str, float],
    *,
    thinking: bool | None = None,
    max_new_tokens: int = 16,
) -> dict:
    """Mean reward of greedy completions, overall and per difficulty label."""
    reward = combined_reward(rewards)
    done = engine.generate(samples, thinking=thinking, max_new_tokens=max_new_tokens)
    scores = [
        reward(c.text, {**s.meta, "thinking": bool(thinking)})
        for c, s in zip(done, samples, strict=True)
    ]
    by = {}
    for s, r in zip(samples, scores, strict=True):
        by.setdefault(s.meta.get("difficulty", "all"), []).append(r)
    return {
        "mean_reward": float(np.mean(scores)),
        "per_difficulty": {k: float(np.mean(v)) for k, v in sorted(by.items())},
        "n": len(scores),
        "examples": [
            {"reference": s.meta.get("answer"), "completion": c.text}
            for c, s in list(zip(done, samples, strict=True))[:4]
        ],
    }
