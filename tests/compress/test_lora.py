"""LoRA modules (compress/lora.py): PEFT init, rule matching, frozen base, merge equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from compress_testing import jitted_logits, rel_err, tiny_model, token_batch
from flax import nnx

from andesvl_jax.compress.lora import (
    LoraParam,
    LoraRule,
    apply_lora,
    lora_modules,
    lora_rules,
    merged,
)
from andesvl_jax.compress.rules import RuleError


def randomise_b(model, seed=1, std=0.05):
    for i, (_, m) in enumerate(lora_modules(model)):
        key = jax.random.key(seed + i)
        m.lora_b.set_value(jax.random.normal(key, m.lora_b.shape) * std)


@pytest.mark.parametrize("scan", [False, True])
def test_fresh_adapter_keeps_the_base_and_merge_equals_the_branch(scan):
    ids = token_batch(0)
    base = tiny_model(scan=scan)
    expected = jitted_logits(base)(ids)
    model = apply_lora(tiny_model(scan=scan), "llm")
    mods = lora_modules(model)
    n_layers = model.cfg.text.num_layers
    assert sum(len(m.names) for _, m in mods) == 7 * n_layers  # q k v o gate up down per layer
    a = np.asarray(mods[0][1].lora_a[...])
    assert np.abs(a).max() <= 1 / np.sqrt(a.shape[-2]) and np.abs(a).max() > 0.5 / np.sqrt(
        a.shape[-2]
    )
    np.testing.assert_allclose(jitted_logits(model)(ids), expected, rtol=0, atol=1e-6)
    randomise_b(model)
    with_lora = jitted_logits(model)(ids)
    assert rel_err(with_lora, expected) > 1e-3  # the adapter now changes the output
    assert rel_err(jitted_logits(merged(model))(ids), with_lora) < 1e-5


def test_only_lora_factors_train_and_the_loss_falls():
    model = apply_lora(tiny_model(), lora_rules("llm_attn", rank=4, alpha=8.0))
    graphdef, params, frozen = nnx.split(model, LoraParam, ...)
    leaves = {p[-1] for p, _ in nnx.to_flat_state(params)}
    assert leaves == {"lora_a", "lora_b"}
    ids = token_batch(3, batch=4, length=12)
    before = jax.tree.map(np.asarray, frozen)

    def loss(p):
        logits = nnx.merge(graphdef, p, frozen)(ids)[0]
        return -jnp.mean(jax.nn.log_softmax(logits[:, :-1]) * jax.nn.one_hot(ids[:, 1:], 512)) * 512

    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        value, g = jax.value_and_grad(loss)(params)
        updates, state = opt.update(g, state)
        return optax.apply_updates(params, updates), state, value

    params, state, first = step(params, state)
    for _ in range(10):
        params, state, value = step(params, state)
    assert float(value) < float(first) - 0.2
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, frozen))


def test_bad_rules_are_errors_naming_them():
    with pytest.raises(RuleError, match=r"lora rule 0 '\^vision/nothing' matches no linear"):
        apply_lora(tiny_model(), [LoraRule("^vision/nothing")])
    with pytest.raises(RuleError, match="rank must be >= 1"):
        LoraRule("x", rank=0)
    with pytest.raises(RuleError, match="branch 'int4' unknown"):
        LoraRule("x", branch="int4")
    with pytest.raises(RuleError, match="differently"):
        apply_lora(tiny_model(scan=True), [LoraRule(r"^llm/layers/0/attn/q$")])


def test_projector_and_vision_adapters_are_optional_targets():
    model = apply_lora(tiny_model(), lora_rules(["llm_qv", "projector", "vision"]))
    names = {n.split("/")[0] for _, m in lora_modules(model) for n in m.names}
    assert names == {"llm", "projector", "vision"}


def test_device_precision_branches_stay_close_to_the_float_branch():
    ids = token_batch(5)
    outs = {}
    for branch in ("float", "float16", "int8"):
        model = apply_lora(tiny_model(), lora_rules("llm_attn", rank=4, branch=branch))
        randomise_b(model, std=0.02)
        if branch == "int8":  # B's LSQ steps from its values (they start small while B is 0)
            for _, m in lora_modules(model):
                m.b_step.set_value(jnp.max(jnp.abs(m.lora_b[...]), axis=-2) / 127)
        outs[branch] = jitted_logits(model)(ids)
    assert 0 < rel_err(outs["float16"], outs["float"]) < 1e-2
    assert 0 < rel_err(outs["int8"], outs["float"]) < 3e-2
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        return jnp.sum(nnx.merge(graphdef, p, rest)(ids)[0] ** 2)

    grads = nnx.to_flat_state(jax.jit(jax.grad(loss))(params))
    steps = [np.abs(np.asarray(v.get_value())).max() for p, v in grads if p[-1] == "b_step"]
    assert steps and min(steps) > 0  # the LoRA's own LSQ steps train
