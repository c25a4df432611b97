"""The qat stage: the LLM's linears fake-quantized by config.quant.rules, activation steps
calibrated from training batches, weights and step sizes (own LR multiplier) trained with
distillation from the float model, checkpointed and resumed like any stage."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.compress.qlinear import QuantScale
from andesvl_jax.configs import model_config
from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
from andesvl_jax.train.loop import initial_state, train
from andesvl_jax.train.objectives import OBJECTIVES
from andesvl_jax.train.optim import module_labels
from andesvl_jax.train.stages import get_stage


def qat_config(make_config, **overrides):
    return make_config(
        stage="qat",
        **{"quant.rules": "w4a8_g32", "quant.distill_weight": 1.0, "steps": 2, **overrides},
    )


def test_qat_state_holds_calibrated_step_sizes_with_their_own_label(make_config):
    config = qat_config(make_config)
    mesh = make_mesh({"data": 1}, jax.devices()[:1])
    stage = get_stage("qat")
    graphdef, state, _ = initial_state(
        config, model_config(config), mesh, DEFAULT_RULES, stage, OBJECTIVES["qat"](config)
    )
    scales = nnx.state(nnx.merge(graphdef, state.params, state.frozen), QuantScale)
    names = {p[-1] for p, _ in nnx.to_flat_state(scales)}
    assert names == {"w_scale", "a_scale"}
    a = [v.get_value() for p, v in nnx.to_flat_state(scales) if p[-1] == "a_scale"]
    assert all(np.all(np.asarray(x) != 1.0) for x in a)  # calibrated from data, not the init
    labels = {str(v) for v in jax.tree.leaves(module_labels(state.params))}
    assert labels == {"llm", "quant"}  # vision and projector are frozen in this stage
    assert state.extra and "reference" in state.extra  # the float teacher's starting params


def test_qat_trains_and_resumes(make_config, tmp_path):
    config = qat_config(make_config)
    summary = train(config, tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "loss" in x]
    assert len(logged) == 2 and all(np.isfinite(x["loss"]) for x in logged)
    assert "distill_kl" in logged[0] and logged[0]["distill_kl"] >= 0
    assert summary["steps"] == 2 if "steps" in summary else True
    resumed = qat_config(make_config, steps=3)
    train(resumed, tmp_path)  # restores the quantized TrainState (scales included) and goes on
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in x for x in lines) == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ({"quant.rules": "w5"}, "unknown quantization recipe 'w5'"),
        ({"quant.weight_init": "minmax"}, "config.quant.weight_init='minmax' unknown"),
        ({"quant.act_init": "p99"}, "config.quant.act_init='p99' unknown"),
        ({"quant.distill_weight": -1.0}, "distill_weight, task_weight >= 0"),
        ({"quant.task_weight": 0.0, "quant.distill_weight": 0.0}, "both 0: nothing to train"),
    ],
)
def test_bad_quant_config_is_a_clear_error_before_anything_runs(make_config, override, message):
    from andesvl_jax.train.config_checks import validate_config

    with pytest.raises(ValueError, match=message):
        validate_config(qat_config(make_config, **override))


def test_qat_stage_lowers_at_real_scale():
    """experiments/andesvl.py:size=0.6b,stage=qat lowers on an 8-device FSDP mesh (one layer each)
    with the step sizes in the sharded train state."""
    from andesvl_jax.train.compile_check import lower_train_step
    from andesvl_jax.train.launch import load_config

    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    config = load_config(
        "experiments/andesvl.py:size=0.6b,stage=qat",
        [
            "--config.model.text.num_layers=1",
            "--config.model.vision.num_layers=1",
            "--config.data.path=/data/train.jsonl",
        ],
    )
    step = lower_train_step(config)
    leaves = nnx.to_flat_state(step.state.params)
    scales = [p for p, _ in leaves if p[-1] == "w_scale"]
    assert len(scales) == 7  # q, k, v, o, gate, up, down of the (stacked) LLM layer


def test_a_non_finite_step_size_update_is_caught_by_the_step_guard(make_config, tmp_path):
    """Only the step sizes' updates go non-finite (their own LR multiplier is NaN): the guard skips
    those steps like any other and stops the run, keeping no checkpoint of a broken state."""
    from andesvl_jax.train.loop import NonFiniteError

    config = qat_config(make_config, steps=4, max_bad_steps=2, save_every=1)
    config.optim.lr_multipliers.quant = float("nan")
    with pytest.raises(NonFiniteError, match="2 non-finite steps in a row"):
        train(config, tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # (the first step runs at warm-up LR 0: its update is finite; the error is raised at the sync
    # after the second bad step, so the log may end before that step's line)
    assert 0.0 in [x["finite"] for x in lines if "finite" in x]


def test_task_weight_scales_the_next_token_term_only():
    """quant.task_weight: total = task_weight x CE + distill_weight x KL (0 = pure distillation)."""
    import jax.numpy as jnp

    from andesvl_jax.compress.qlinear import quantize_model
    from andesvl_jax.config import get_preset
    from andesvl_jax.data.batch import TrainBatch
    from andesvl_jax.models.andesvl import AndesVL
    from andesvl_jax.train.objectives import next_token_objective, qat_objective

    model = quantize_model(AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0)), "w4_g32")
    ids = np.random.default_rng(0).integers(0, 500, (2, 16)).astype(np.int32)
    pos = np.broadcast_to(np.arange(16, dtype=np.int32), (2, 16)).copy()
    batch = TrainBatch(
        ids, np.ones_like(ids), pos, np.roll(ids, -1, 1), np.ones((2, 16), np.float32), None
    )
    reference = nnx.clone(model)
    for _, var in nnx.to_flat_state(nnx.state(reference, nnx.Param)):
        var.set_value(var.get_value() * 1.01)  # a teacher that differs: KL > 0

    def total(task_weight):
        return float(
            qat_objective(1.0, task_weight=task_weight).loss(model, reference, batch, {})[0]
        )

    ce = float(next_token_objective().loss(model, None, batch, {})[0])
    assert total(0.0) > 0
    np.testing.assert_allclose(total(1.0) - total(0.0), ce, rtol=1e-5)
    np.testing.assert_allclose(total(2.0) - total(0.0), 2 * ce, rtol=1e-5)
    assert jnp.isfinite(total(0.5))
