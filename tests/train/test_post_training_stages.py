"""MPO and GRPO wired into the trainer: pair batches, the MPO step against numpy, delta state, and
the GRPO rollout loop end to end."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.configs import model_config
from andesvl_jax.data import DataConfig, TextTokenizer, make_dataset
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
from andesvl_jax.train.loop import initial_state, train
from andesvl_jax.train.objectives import mpo_objective
from andesvl_jax.train.rollouts import PromptSchedule, RolloutIterator, RolloutSpec
from andesvl_jax.train.stages import get_stage
from andesvl_jax.train.trainer import make_train_step


def _pairs_dataset(batch_size=4):
    cfg = DataConfig(
        stage="mpo", batch_size=batch_size, max_tokens=128, max_patches=64, image_max_size=84
    )
    src = SyntheticSource({"preference": 1.0}, size=64, seed=0, ctx=TaskContext(56, 84))
    return make_dataset(src, cfg, TextTokenizer.default(), 0, 1)


def test_preference_batches_hold_chosen_and_rejected_rows_and_resume():
    tok = TextTokenizer.default()
    it = iter(_pairs_dataset())
    b = next(it)
    assert b.input_ids.shape == (4, 128)
    for pair in range(2):
        c, r = 2 * pair, 2 * pair + 1
        trained = [tok.decode(b.targets[row][b.loss_mask[row] > 0]) for row in (c, r)]
        chosen, rejected = (t.removesuffix("<|im_end|>") for t in trained)
        assert abs(int(chosen) - int(rejected)) == 1 and trained[0].endswith("<|im_end|>")
        first = int(np.argmax(b.loss_mask[c] > 0))  # the prompt (and its images) is shared
        np.testing.assert_array_equal(b.input_ids[c, : first + 1], b.input_ids[r, : first + 1])
    state = it.get_state()
    expected = next(it)
    again = iter(_pairs_dataset())
    again.set_state(state)
    for x, y in zip(jax.tree.leaves(next(again)), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(x, y)


def _row_logps(graphdef, params, frozen, batch):
    model = nnx.merge(graphdef, params, frozen)
    logits, _ = model(
        batch.input_ids, batch.images, positions=batch.positions, segment_ids=batch.segment_ids
    )
    logits = np.asarray(logits, np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    lp = np.take_along_axis(logits, batch.targets[..., None], -1)[..., 0] - lse
    return (lp * batch.loss_mask).sum(1)


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def test_mpo_step_matches_numpy_and_tracks_delta(make_config):
    config = make_config(stage="mpo")
    mesh = make_mesh({"data": 1}, jax.devices()[:1])
    objective = mpo_objective()
    graphdef, state, optimizer = initial_state(
        config, model_config(config), mesh, DEFAULT_RULES, get_stage("mpo"), objective
    )
    step = jax.jit(make_train_step(graphdef, optimizer, objective=objective))
    it = iter(_pairs_dataset())
    b1, b2 = next(it), next(it)
    # step 1: the policy is the reference, so r = 0 and delta = 0
    policy = _row_logps(graphdef, state.params, state.frozen, b1)
    sft = np.mean(-policy[0::2] / b1.loss_mask[0::2].sum(1))
    expected = 0.8 * np.log(2) + 0.2 * 2 * np.log(2) + sft
    state, m = step(state, b1)
    np.testing.assert_allclose(float(m["loss"]), expected, rtol=1e-5)
    assert abs(float(state.extra["delta"].value())) < 1e-5  # one batch-mean of (near) zeros
    # step 2: rewards are beta * (policy - reference) log-ratios of the updated policy
    pol = _row_logps(graphdef, state.params, state.frozen, b2)
    ref = _row_logps(graphdef, state.extra["reference"], state.frozen, b2)
    rc, rr = 0.1 * (pol[0::2] - ref[0::2]), 0.1 * (pol[1::2] - ref[1::2])
    dpo = -_log_sigmoid(rc - rr)
    bco = -_log_sigmoid(rc) - _log_sigmoid(-rr)  # delta is still 0 for batch 2
    sft = -pol[0::2] / b2.loss_mask[0::2].sum(1)
    expected = np.mean(0.8 * dpo + 0.2 * bco + sft)
    state, m = step(state, b2)
    np.testing.assert_allclose(float(m["loss"]), expected, rtol=1e-4)
    np.testing.assert_allclose(float(m["reward_accuracy"]), np.mean(rc > rr))
    delta = np.mean([0.0, np.mean(np.concatenate([rc, rr]))])
    np.testing.assert_allclose(float(state.extra["delta"].value()), delta, rtol=1e-3, atol=1e-5)


def test_rollouts_need_whole_groups_per_process(make_config):
    config = make_config(stage="grpo", steps=2)
    config.grpo.prompts_per_rollout = 4
    spec = RolloutSpec.from_config(config)
    with pytest.raises(ValueError, match="must divide by the 3 processes"):
        RolloutIterator(spec, TextTokenizer.default(), policy=None, process_count=3)
    RolloutIterator(spec, TextTokenizer.default(), policy=None, process_index=1, process_count=2)


def test_prompt_schedule_runs_phases_in_order_easy_first(make_config):
    config = make_config(stage="grpo", steps=8)
    config.grpo.update(phases="count;text_arith", prompts_per_rollout=4, updates_per_rollout=2)
    schedule = PromptSchedule(RolloutSpec.from_config(config))  # 4 rounds: 2 per phase
    rounds = [schedule(r) for r in range(4)]
    assert {s.meta["task"] for r in rounds[:2] for s in r} == {"count"}
    assert {s.meta["task"] for r in rounds[2:] for s in r} == {"text_arith"}
    order = {"easy": 0, "hard": 2}
    ranks = [order[s.meta["difficulty"]] for s in rounds[0] + rounds[1]]
    assert ranks == sorted(ranks)


def test_grpo_stage_runs_rollouts_and_updates(make_config, tmp_path):
    config = make_config(stage="grpo", steps=4)
    config.grpo.update(prompts_per_rollout=2, group_size=4, updates_per_rollout=2, max_new_tokens=4)
    config.data.mixture = {"count": 1.0}
    summary = train(config, tmp_path)
    assert summary["steps"] == 4 and summary["stop_reason"] == "completed"
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "loss" in x]
    assert len(logged) == 4 and all(np.isfinite(x["loss"]) for x in logged)
    assert {"kl", "clip_fraction", "mean_reward"} <= set(logged[0])
    assert logged[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # first update: policy == reference


def test_demo_post_stages_have_configs_and_start_points():
    """demo-post's GRPO recipe: grpo_warmup (SFT on math_digits) from sft, then grpo from it."""
    from andesvl_jax.jobs.demo_post import STARTS_FROM
    from andesvl_jax.train.config_checks import validate_config
    from andesvl_jax.train.launch import load_config

    configs = {s: load_config(f"experiments/tiny.py:stage={s}", []) for s in STARTS_FROM}
    for stage, config in configs.items():
        validate_config(config)
        assert get_stage(stage).name == stage == config.stage
    assert STARTS_FROM["grpo"] == "grpo_warmup" and STARTS_FROM["grpo_warmup"] == "sft"
    assert get_stage("grpo_warmup").objective == "next_token"
    assert "math_digits" in configs["grpo_warmup"].data.mixture
    assert dict(configs["grpo"].data.mixture) == {"math_digits": 1.0}
    # GRPO's prompts come from another stream than the warm-up's labelled samples
    assert configs["grpo"].seed != configs["grpo_warmup"].seed
