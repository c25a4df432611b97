"""The eagle and hass stages: a draft head trains on the frozen target's online features, the
target's parameters stay frozen, the head is saved next to the run and drafts for the target."""

import json

import jax
import numpy as np

from andesvl_jax.configs import model_config
from andesvl_jax.infer.speculative.draft_io import load_draft
from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
from andesvl_jax.train.eagle import step_mask
from andesvl_jax.train.loop import initial_state, train
from andesvl_jax.train.objectives import OBJECTIVES
from andesvl_jax.train.optim import module_labels
from andesvl_jax.train.stages import get_stage


def test_hass_step_masks_match_decode_time_context():
    seg = np.array([[1, 1, 1, 1, 2, 2]])
    steps = 3
    m = np.asarray(step_mask(seg, 3, steps))[0].reshape(6, steps, 6)  # [query, step, key]
    # query 3 at step 3: step-1 keys 0..1, its step-2 key at 2, its own step-3 key at 3
    assert m[3, 0].tolist() == [1, 1, 0, 0, 0, 0]
    assert m[3, 1].tolist() == [0, 0, 1, 0, 0, 0]
    assert m[3, 2].tolist() == [0, 0, 0, 1, 0, 0]
    # step 1 is plain causal attention within the segment
    one = np.asarray(step_mask(seg, 1, steps))[0].reshape(6, steps, 6)
    assert one[5, 0].tolist() == [0, 0, 0, 0, 1, 1] and not one[:, 1:].any()


def test_eagle_stage_trains_only_the_draft_head(make_config):
    config = make_config(stage="eagle")
    mesh = make_mesh({"data": 1}, jax.devices()[:1])
    objective = OBJECTIVES["eagle"](config)
    _, state, _ = initial_state(
        config, model_config(config), mesh, DEFAULT_RULES, get_stage("eagle"), objective
    )
    assert {str(v) for v in jax.tree.leaves(module_labels(state.params))} == {"draft"}
    assert "draft" not in state.frozen and "target" in state.frozen


def test_hass_stage_trains_and_saves_the_head(make_config, tmp_path):
    stage = "hass"
    config = make_config(stage=stage, steps=3, **{"optim.lr": 3e-3})
    summary = train(config, tmp_path)
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in logged if "loss" in x]
    assert len(losses) == 3 and all(np.isfinite(losses))
    accuracies = {k for x in logged for k in x if k.startswith("draft_accuracy_")}
    assert len(accuracies) == (3 if stage == "hass" else 1)
    head = load_draft(summary["draft"])
    head.check_target(model_config(config).text)


def test_hass_head_trains_against_a_deployed_integer_target(make_config, tmp_path):
    """draft.deployed: the frozen target is the deployed W4 model (its integer codes stay frozen),
    and the head drafts for that deployed model."""
    from flax import nnx

    from andesvl_jax.compress import deploy, quantize_model, save_deployed
    from andesvl_jax.compress.deployed_io import load_deployed
    from andesvl_jax.config import get_preset
    from andesvl_jax.models.andesvl import AndesVL

    model = quantize_model(
        AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0)), "w4a16_g32"
    )
    path = save_deployed(deploy(model, separate_layers=True), tmp_path / "w4.safetensors")
    config = make_config(stage="hass", steps=2, **{"draft.deployed": str(path)})
    mesh = make_mesh({"data": 1}, jax.devices()[:1])
    _, state, _ = initial_state(
        config,
        model_config(config),
        mesh,
        DEFAULT_RULES,
        get_stage("hass"),
        OBJECTIVES["hass"](config),
    )
    frozen = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(state.frozen)}
    assert any(k.startswith("target.") and k.endswith(".plane0") for k in frozen), sorted(frozen)[
        :5
    ]
    summary = train(config, tmp_path / "run")
    head = load_draft(summary["draft"])
    head.check_target(load_deployed(path).cfg.text)
