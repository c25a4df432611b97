"""The train step and loop: sharded equivalence, frozen parameters, masking, NaN guard, config checks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.configs import model_config
from andesvl_jax.convert.workdir import trained_model
from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
from andesvl_jax.train.loop import initial_params, train


def losses(workdir):
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if "loss" in x]


def test_sharded_run_matches_single_device(make_config, tmp_path):
    single = make_config(**{"mesh.data": 1})
    train(single, tmp_path / "single", devices=jax.devices()[:1])
    sharded = make_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})
    train(sharded, tmp_path / "sharded")
    a, b = losses(tmp_path / "single"), losses(tmp_path / "sharded")
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    pa = nnx.state(trained_model(single, tmp_path / "single"))
    pb = nnx.state(trained_model(sharded, tmp_path / "sharded"))
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_parameters_are_sharded_as_the_rules_say(make_config):
    config = make_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})
    mesh = make_mesh(dict(config.mesh))
    _, state = initial_params(config, model_config(config), mesh, DEFAULT_RULES)
    P = jax.sharding.PartitionSpec
    assert state["llm"]["layers"]["attn"]["q"]["kernel"].get_value().sharding.spec == P(
        None, "fsdp", "tensor"
    )
    assert state["llm"]["layers"]["mlp"]["down"]["kernel"].get_value().sharding.spec == P(
        None, "tensor", "fsdp"
    )
    assert state["llm"]["embed"]["embedding"].get_value().sharding.spec == P("tensor", "fsdp")
    assert state["vision"]["layers"]["attn"]["q"]["kernel"].get_value().sharding.spec == P(
        None, "fsdp", "tensor"
    )
    shard = state["llm"]["layers"]["mlp"]["gate"]["kernel"].get_value().addressable_shards[0].data
    assert shard.shape == (2, 32, 64)  # [layers, 64/fsdp, 128/tensor]


def test_align_stage_leaves_the_llm_untouched(make_config, tmp_path):
    config = make_config(stage="align")
    before = nnx.state(
        nnx.merge(
            *initial_params(config, model_config(config), make_mesh({"data": -1}), DEFAULT_RULES)
        )
    )
    train(config, tmp_path)
    after = nnx.state(trained_model(config, tmp_path))
    for x, y in zip(jax.tree.leaves(before["llm"]), jax.tree.leaves(after["llm"]), strict=True):
        np.testing.assert_array_equal(x, y)
    changed = [
        not np.array_equal(x, y)
        for x, y in zip(
            jax.tree.leaves(before["vision"]), jax.tree.leaves(after["vision"]), strict=True
        )
    ]
    assert all(changed)


def test_non_finite_steps_are_skipped_and_stop_the_run(make_config, tmp_path):
    from andesvl_jax.train.loop import NonFiniteError

    config = make_config(steps=6, max_bad_steps=2, save_every=1)
    config.optim.lr = float("nan")  # every update is non-finite from the first step on
    with pytest.raises(NonFiniteError, match="2 non-finite steps in a row"):
        train(config, tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines and all(x["finite"] == 0.0 for x in lines)
    assert not (tmp_path / "checkpoints").exists() or not any(
        (tmp_path / "checkpoints").glob("[0-9]*")
    )


def test_config_errors_before_compiling(make_config, tmp_path):
    with pytest.raises(ValueError, match="needs 16 devices"):
        train(make_config(**{"mesh.data": 16}), tmp_path)
    with pytest.raises(ValueError, match="must divide by data\\*fsdp=8"):
        train(make_config(**{"data.batch_size": 12}), tmp_path)
    bad = make_config()
    bad.optim.lrr = 1.0
    with pytest.raises(ValueError, match=r"unknown config keys \['optim.lrr'\]"):
        train(bad, tmp_path)
    with pytest.raises(ValueError, match="config.stage='pretrain' unknown"):
        train(make_config(stage="pretrain"), tmp_path)


def test_loss_ignores_masked_tokens():
    from andesvl_jax.train.losses import next_token_loss

    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 11))
    targets = jnp.arange(10).reshape(2, 5) % 11
    mask = jnp.asarray([[0, 0, 1, 1, 0], [1, 0, 0, 0, 0]], jnp.float32)
    total, stats = next_token_loss(logits, targets, mask)
    lp = jax.nn.log_softmax(logits)
    ref = -sum(lp[b, t, targets[b, t]] for b, t in [(0, 2), (0, 3), (1, 0)])
    np.testing.assert_allclose(total, ref, rtol=1e-6)
    assert float(stats["tokens"]) == 3
    # changing a masked-out target changes nothing
    total2, _ = next_token_loss(logits, targets.at[0, 0].set(7), mask)
    np.testing.assert_array_equal(total, total2)


def test_gradient_accumulation_equals_one_big_batch(make_config, tmp_path):
    two = jax.devices()[:2]
    train(make_config(**{"mesh.data": 2}), tmp_path / "one", devices=two)
    train(make_config(**{"mesh.data": 2, "optim.accum_steps": 4}), tmp_path / "accum", devices=two)
    np.testing.assert_allclose(losses(tmp_path / "one"), losses(tmp_path / "accum"), rtol=1e-5)


def test_a_stage_starts_from_the_previous_stage(make_config, tmp_path):
    align = make_config(stage="align", steps=2)
    train(align, tmp_path / "align")
    aligned = nnx.state(trained_model(align, tmp_path / "align"))
    joint = make_config(
        stage="joint", steps=1, **{"init.from_stage_workdir": str(tmp_path / "align")}
    )
    _, start = initial_params(joint, model_config(joint), make_mesh({"data": -1}), DEFAULT_RULES)
    for x, y in zip(jax.tree.leaves(aligned), jax.tree.leaves(start), strict=True):
        np.testing.assert_array_equal(x, y)
    assert train(joint, tmp_path / "joint")["stop_reason"] == "completed"


def test_a_stage_from_a_run_of_another_architecture_names_the_tensor(make_config, tmp_path):
    from andesvl_jax.convert.hf_config import ConfigError

    align = make_config(stage="align", steps=1, **{"model.text.intermediate_size": 96})
    train(align, tmp_path / "align")
    joint = make_config(
        stage="joint", steps=1, **{"init.from_stage_workdir": str(tmp_path / "align")}
    )  # the preset's intermediate size (128), not the run's
    with pytest.raises(ConfigError, match=r"mlp.*\(.*96.*\).*expects.*128"):
        initial_params(joint, model_config(joint), make_mesh({"data": -1}), DEFAULT_RULES)


def test_a_stage_may_switch_the_layer_layout(make_config, tmp_path):
    """A scan_layers=True checkpoint starts a scan_layers=False stage (and the layouts round-trip)."""
    from andesvl_jax.convert.workdir import match_layer_layout

    align = make_config(stage="align", steps=1)
    train(align, tmp_path / "align")
    stacked = trained_model(align, tmp_path / "align")
    unrolled_cfg = make_config(
        stage="joint", steps=1, **{"init.from_stage_workdir": str(tmp_path / "align")}
    )
    unrolled_cfg.model.scan_layers = False
    graphdef, start = initial_params(
        unrolled_cfg, model_config(unrolled_cfg), make_mesh({"data": -1}), DEFAULT_RULES
    )
    unrolled = nnx.merge(graphdef, start)
    assert isinstance(unrolled.llm.layers, nnx.List)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 300, (2, 12)), jnp.int32)
    # same weights; scan and unrolled layers compile differently, so only float rounding differs
    np.testing.assert_allclose(unrolled(ids)[0], stacked(ids)[0], atol=1e-5)

    pure_stacked = nnx.state(stacked).to_pure_dict()
    pure_unrolled = nnx.state(unrolled).to_pure_dict()
    back = match_layer_layout(match_layer_layout(pure_stacked, pure_unrolled), pure_stacked)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(pure_stacked), strict=True):
        np.testing.assert_array_equal(x, y)
    assert jax.tree.structure(pure_stacked) != jax.tree.structure(pure_unrolled)
