"""Quantization rules: first match wins, mixed precision, and errors that name the rule/module."""

import re

import pytest
from compress_testing import tiny_model

from andesvl_jax.compress.qlinear import QuantLinear, quant_sites, quantize_model
from andesvl_jax.compress.rules import (
    RECIPES,
    QuantRule,
    RuleError,
    get_recipe,
    linear_sites,
    resolve_rules,
    weight_sites,
)


def chosen(model, rules):
    return {n: r for s, r in resolve_rules(list(linear_sites(model)), rules) for n in s.names}


def test_first_match_wins_and_float_rules_skip():
    model = tiny_model(scan=False)
    rules = [
        QuantRule(r"layers/0/mlp/down$", weight_bits=None),  # keep float
        QuantRule(r"^llm/layers/\d+/mlp/", 2, 32),
        QuantRule(r"^llm/layers/\d+/(attn|mlp)/", 8, None, act="a8"),
    ]
    got = chosen(model, rules)
    assert "llm/layers/0/mlp/down" not in got
    assert got["llm/layers/1/mlp/down"].weight_bits == 2
    assert got["llm/layers/0/mlp/up"].weight_bits == 2
    assert got["llm/layers/0/attn/q"].weight_bits == 8
    assert not any(n.startswith(("vision", "projector")) for n in got)  # default scope: the LLM
    assert len(got) == 13


def test_mixed_recipe_gives_each_module_its_precision():
    model = quantize_model(tiny_model(scan=False), "mixed")
    bits = {
        s.names[0]: (s.module.rule.weight_bits, s.module.rule.group_size)
        for s in quant_sites(model)
    }
    assert bits["llm/layers/0/attn/o"] == (8, None)
    assert bits["llm/layers/0/mlp/up"] == (4, 32)
    assert bits["llm/layers/1/mlp/up"] == (2, 32)
    assert isinstance(model.llm.layers[1].mlp.down, QuantLinear)
    assert not isinstance(model.vision.layers[0].attn.q, QuantLinear)


@pytest.mark.parametrize("name", [n for n in RECIPES if n != "w4a16_g128"])
def test_every_recipe_applies_to_the_tiny_model(name):
    # "mixed" has a layer-specific (W2) rule: separate layers only
    sites = list(weight_sites(tiny_model(scan=name != "mixed")))
    assert resolve_rules(sites, get_recipe(name))


def test_rule_matching_nothing_is_an_error_naming_it():
    with pytest.raises(
        RuleError, match=re.escape("rule 0 '^llm/.*/ffn/' matches no linear module")
    ):
        chosen(tiny_model(), [QuantRule(r"^llm/.*/ffn/", 4, 32)])


def test_shadowed_rule_is_an_error():
    rules = [QuantRule(r"^llm/", 4, 32), QuantRule(r"^llm/.*attn/q$", 8, None)]
    with pytest.raises(RuleError, match=re.escape("rule 1 '^llm/.*attn/q$' is shadowed")):
        chosen(tiny_model(), rules)


def test_optional_rule_may_match_nothing():
    rules = [QuantRule(r"^llm/lm_head$", 8, None, optional=True), QuantRule(r"^llm/", 4, 32)]
    assert len(chosen(tiny_model(), rules)) == 14  # tied embeddings: no lm_head


def test_group_that_does_not_divide_k_names_module():
    with pytest.raises(
        RuleError,
        match="group_size 128 does not divide the 64 input features of llm/layers/0/attn/",
    ):
        chosen(tiny_model(), get_recipe("w4a16_g128"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weight_bits=5), "weight_bits 5 unsupported"),
        (dict(group_size=48), "group_size 48 unsupported"),
        (dict(act="a4"), "act 'a4' unknown"),
        (dict(act_scale="per_channel"), "act_scale 'per_channel' unknown"),
        (dict(act="a8", act_scale="dynamic", act_offset=True), "act_offset"),
        (dict(pattern="(unclosed"), "not a regular expression"),
    ],
)
def test_bad_rules_are_clear_errors(kwargs, message):
    fields = dict(pattern=r"^llm/", weight_bits=4, group_size=32) | kwargs
    with pytest.raises(RuleError, match=re.escape(message)):
        QuantRule(**fields)


def test_unknown_recipe():
    with pytest.raises(RuleError, match="unknown quantization recipe 'w5a16'.*w4a16_g32"):
        get_recipe("w5a16")


def test_layer_specific_rules_need_separate_layers():
    rules = [QuantRule(r"^llm/layers/1/mlp/", 2, 32), QuantRule(r"^llm/layers/\d+/", 4, 32)]
    with pytest.raises(RuleError, match="stacked layers of llm/layers/mlp/down different settings"):
        chosen(tiny_model(scan=True), rules)
    assert len(chosen(tiny_model(scan=False), rules)) == 14


def test_no_rules_is_an_error():
    with pytest.raises(RuleError, match="no quantization rules"):
        chosen(tiny_model(), [])
