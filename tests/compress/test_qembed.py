"""Quantized token embeddings (compress/qlinear.py): the table fake-quantized once, read as rows
(lookup) and as the tied head; deployed as packed codes with the same numbers; counted in BPW."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compress_testing import greedy, tiny_model
from flax import nnx

from andesvl_jax.compress.bpw import deployed_bits
from andesvl_jax.compress.deploy import DeployedEmbed, deploy
from andesvl_jax.compress.deployed_io import load_deployed, save_deployed
from andesvl_jax.compress.lsq import dequantize_codes
from andesvl_jax.compress.qlinear import QuantEmbed, quantize_model
from andesvl_jax.compress.rules import QuantRule, RuleError

PROMPT = np.array([5, 17, 42, 99, 3, 250], np.int32)


def emb_rules(bits: int, group):
    return [
        QuantRule(r"^llm/layers/\d+/(attn|mlp)/", 4, 32, act="a8"),
        QuantRule(r"^llm/embed$", bits, group, kind="embedding"),
    ]


@pytest.mark.parametrize("tie", [True, False])
def test_lookup_and_tied_head_read_the_same_codes(tie):
    model = quantize_model(tiny_model(text={"tie_embeddings": tie}), emb_rules(4, 32))
    emb = model.llm.embed
    assert isinstance(emb, QuantEmbed) and emb.w_scale.shape == (2, 512)  # D/32 x vocab
    wc, sw = emb.quantized_weight()
    table = np.asarray(dequantize_codes(wc, sw)).T  # [vocab, D]
    assert len(np.unique(np.round(table[7] / np.repeat(np.asarray(sw)[:, 7], 32)))) <= 16
    ids = jnp.array([[3, 7, 511]])
    np.testing.assert_array_equal(np.asarray(emb(ids)), table[np.asarray(ids)])
    x = jax.random.normal(jax.random.key(0), (3, 64))
    np.testing.assert_allclose(np.asarray(emb.attend(x)), np.asarray(x) @ table.T, rtol=1e-5)
    emb.enabled = False  # the float teacher's view: the original table
    np.testing.assert_array_equal(np.asarray(emb(ids)), np.asarray(emb.kernel[...])[ids])


def test_embedding_steps_get_gradients_from_lookup_and_head():
    model = quantize_model(tiny_model(text={"tie_embeddings": True}), emb_rules(4, 32))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        logits, _ = nnx.merge(graphdef, p, rest)(jnp.asarray(PROMPT)[None])
        return jnp.sum(jax.nn.log_softmax(logits)[..., 0])

    grads = jax.grad(loss)(params)
    g = np.asarray(grads["llm"]["embed"]["w_scale"][...])
    assert np.isfinite(g).all() and np.count_nonzero(g) > 100


@pytest.mark.parametrize("bits, group, tie", [(8, None, True), (4, 32, False)])
def test_deployed_embedding_computes_the_qat_numbers_and_is_counted(tmp_path, bits, group, tie):
    model = quantize_model(tiny_model(text={"tie_embeddings": tie}), emb_rules(bits, group))
    from andesvl_jax.compress.calibrate import calibrate_activations

    calibrate_activations(model, lambda m: m(jnp.asarray(PROMPT)[None]))
    deployed = deploy(model, separate_layers=True)
    assert isinstance(deployed.llm.embed, DeployedEmbed)
    want, logits_q = greedy(model, PROMPT, 4)
    got, logits_d = greedy(deployed, PROMPT, 4)
    assert got == want
    np.testing.assert_array_equal(logits_d, logits_q)
    path = save_deployed(deployed, tmp_path / "m.safetensors")
    np.testing.assert_array_equal(greedy(load_deployed(path), PROMPT, 4)[1], logits_q)
    part = deployed_bits(path)["parts"]["llm embedding"]
    step_bits = 16 / (group or 64)  # one fp16 step per group (per row: per D = 64 entries)
    assert part["weights"] == 512 * 64 and part["bpw"] == pytest.approx(bits + step_bits)


def test_embedding_rules_are_explicit_and_weight_only():
    with pytest.raises(RuleError, match="an embedding table quantizes weights only"):
        QuantRule(r"^llm/embed$", 8, None, act="a8", kind="embedding")
    # a broad linear rule never catches the table; an embedding rule that matches nothing is named
    model = quantize_model(tiny_model(), [QuantRule(r"^llm/", 4, 32, act="a8")])
    assert not isinstance(model.llm.embed, QuantEmbed)
    with pytest.raises(RuleError, match=r"rule 1 '\^vision/embed\$' matches no embedding module"):
        quantize_model(
            tiny_model(),
            [QuantRule(r"^llm/", 4, 32), QuantRule(r"^vision/embed$", 8, None, kind="embedding")],
        )
