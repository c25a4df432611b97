"""GRPO learns at all: the real objective, train step and optimizer on a bandit-sized policy.

The policy is a bigram table (next-token logits = table[current token]) behind the same call
signature as AndesVL, so `grpo_objective` -> `make_train_step` -> `make_optimizer` run unchanged.
Rollouts are sampled from the live policy exactly as train/rollouts.py lays them out: prompt +
completion (stop token included) + padding, loss only on completion tokens, pi_old recorded before
the round's updates. The task: answer the prompt with token ANSWER then STOP (reward 1), anything
else 0; the expected reward pi(ANSWER | PROMPT) * pi(STOP | ANSWER) is computed exactly.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.configs import base_config
from andesvl_jax.train.grpo import GRPOConfig, group_advantages
from andesvl_jax.train.objectives import grpo_objective
from andesvl_jax.train.optim import make_optimizer
from andesvl_jax.train.sequence_logprobs import batch_token_logprobs
from andesvl_jax.train.trainer import TrainState, make_train_step

PAD, PROMPT, STOP, ANSWER = 0, 1, 2, 5
VOCAB, MAX_NEW, LENGTH = 8, 3, 4  # row: prompt + up to 3 completion tokens


class Bigram(nnx.Module):
    """Next-token logits [b, t, V] = table[input_ids]; AndesVL's call signature."""

    def __init__(self):
        self.table = nnx.Param(jnp.zeros((VOCAB, VOCAB)))

    def __call__(self, input_ids, images, *, positions=None, segment_ids=None):
        return self.table[input_ids], None


class Batch(NamedTuple):
    input_ids: jax.Array
    segment_ids: jax.Array
    positions: jax.Array
    targets: jax.Array
    loss_mask: jax.Array
    images: None
    old_logprobs: jax.Array
    advantages: jax.Array
    rewards: jax.Array


def expected_reward(table) -> float:
    p = jax.nn.softmax(table, axis=-1)
    return float(p[PROMPT, ANSWER] * p[ANSWER, STOP])


def rollout(table, rng, n_prompts, group_size, reward_fn, logprobs):
    """n_prompts * G sampled completions laid out as GRPO rows, rewards and pi_old."""
    p = np.asarray(jax.nn.softmax(table, axis=-1), np.float64)
    rows, rewards = [], []
    for _ in range(n_prompts * group_size):
        ids = [PROMPT]
        while len(ids) <= MAX_NEW and (len(ids) == 1 or ids[-1] != STOP):
            ids.append(int(rng.choice(VOCAB, p=p[ids[-1]] / p[ids[-1]].sum())))
        rows.append(ids)
        rewards.append(reward_fn(ids[1:]))
    b = len(rows)
    input_ids = np.full((b, LENGTH), PAD, np.int32)
    targets = np.full((b, LENGTH), PAD, np.int32)
    mask = np.zeros((b, LENGTH), np.float32)
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = ids
        targets[r, : len(ids) - 1] = ids[1:]
        mask[r, : len(ids) - 1] = 1.0  # every completion token (the stop included), no prompt/pad
    rewards = np.asarray(rewards, np.float32)
    segments = (np.arange(LENGTH)[None] < np.array([len(x) for x in rows])[:, None]).astype(
        np.int32
    )
    partial = Batch(
        input_ids,
        segments,
        np.tile(np.arange(LENGTH, dtype=np.int32), (b, 1)),
        targets,
        mask,
        None,
        np.zeros((b, LENGTH), np.float32),
        np.asarray(group_advantages(jnp.asarray(rewards), group_size)),
        rewards,
    )
    return partial._replace(old_logprobs=np.asarray(logprobs(partial)))


def exact(completion) -> float:
    return float(completion == [ANSWER, STOP])


def run_grpo(reward_fn, *, steps=40, updates_per_rollout=2, beta=0.04, lr=0.05, seed=0):
    """GRPO on the bigram policy; returns (expected rewards after each round, final table)."""
    config = base_config()
    config.optim.update(lr=lr, warmup_steps=1, weight_decay=0.0, schedule="constant")
    model = Bigram()
    graphdef, params = nnx.split(model)
    cfg = GRPOConfig(group_size=8, beta=beta)
    objective = grpo_objective(cfg)
    optimizer = make_optimizer(config.optim, steps)
    step = jax.jit(make_train_step(graphdef, optimizer, objective=objective))
    state = TrainState(
        step=jnp.asarray(0),
        params=params,
        frozen=nnx.State({}),
        opt_state=optimizer.init(params),
        rng=jax.random.PRNGKey(0),
        bad_steps=jnp.asarray(0),
        skipped_steps=jnp.asarray(0),
        extra=objective.init_extra(params),
    )
    logprobs = jax.jit(
        lambda params, batch: batch_token_logprobs(nnx.merge(graphdef, params), batch)
    )
    rng = np.random.default_rng(seed)
    history, metrics = [expected_reward(params["table"][...])], []
    for _ in range(steps // updates_per_rollout):
        table = state.params["table"][...]
        batch = rollout(
            table, rng, 8, cfg.group_size, reward_fn, lambda b, p=state.params: logprobs(p, b)
        )
        for _ in range(updates_per_rollout):
            state, m = step(state, batch)
            metrics.append({k: float(v) for k, v in m.items()})
        history.append(expected_reward(state.params["table"][...]))
    return history, metrics, state


def test_grpo_loop_raises_the_expected_reward_of_a_bandit():
    history, metrics, _ = run_grpo(exact)
    assert history[0] == pytest.approx(1 / 64)
    assert history[-1] > 0.6, history
    assert all(m["finite"] for m in metrics)
    # the first update of each round is on-policy: ratio exactly 1
    assert all(m["ratio"] == pytest.approx(1.0, abs=1e-6) for m in metrics[::2])


def test_grpo_loop_with_beta_and_single_update_rounds_also_learns():
    history, _, _ = run_grpo(exact, updates_per_rollout=1, beta=0.2, steps=30)
    assert history[-1] > 0.4, history


def test_constant_reward_leaves_the_policy_unchanged():
    """Every group all-equal: advantages 0, KL gradient 0 at pi == ref, so Adam's update is 0."""
    _, metrics, state = run_grpo(lambda c: 1.0, steps=6)
    np.testing.assert_array_equal(np.asarray(state.params["table"][...]), 0.0)
    assert all(m["grad_norm"] == 0.0 and m["kl"] == 0.0 for m in metrics)


def test_objective_scores_tokens_at_the_sampling_temperature():
    """pi_theta, pi_old and pi_ref are softmax(logits / T) of the sampler: on-policy ratio is 1."""
    model = Bigram()
    graphdef, params = nnx.split(model)
    params["table"][...] = jax.random.normal(jax.random.PRNGKey(1), (VOCAB, VOCAB))
    table = params["table"][...]
    temperature = 0.5
    logprobs = lambda b, t: batch_token_logprobs(nnx.merge(graphdef, params), b, t)  # noqa: E731
    batch = rollout(
        table / temperature,
        np.random.default_rng(0),
        2,
        4,
        exact,
        lambda b: logprobs(b, temperature),
    )
    objective = grpo_objective(GRPOConfig(group_size=4, beta=0.04, temperature=temperature))
    policy = nnx.merge(graphdef, params)
    _, stats = objective.loss(policy, policy, batch, objective.init_extra(params))
    assert float(stats["ratio_sum"] / stats["normaliser"]) == pytest.approx(1.0, abs=1e-6)
    assert float(stats["kl_sum"]) == pytest.approx(0.0, abs=1e-6)
    # pi_old recorded at T=1 for tokens drawn at T=0.5 would not be the sampler's probabilities
    stale = batch._replace(old_logprobs=np.asarray(logprobs(batch, 1.0)))
    _, stats = objective.loss(policy, policy, stale, {})
    assert abs(float(stats["ratio_sum"] / stats["normaliser"]) - 1.0) > 1e-2


def test_grpo_config_rejects_greedy_rollouts():
    with pytest.raises(ValueError, match="temperature"):
        GRPOConfig(temperature=0.0)
