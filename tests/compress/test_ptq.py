"""PTQ baselines: GPTQ beats round-to-nearest on a layer's reconstruction error with correlated
calibration inputs; PTQ results are QAT parameters (the fake-quant forward reproduces the codes)
and deploy exactly; activation calibration; clear errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from compress_testing import greedy, tiny_model, token_batch

from andesvl_jax.compress.calibrate import calibrate_activations, observe
from andesvl_jax.compress.deploy import deploy
from andesvl_jax.compress.lsq import dequantize_codes
from andesvl_jax.compress.ptq import apply_ptq, gptq, reconstruction_error, rtn
from andesvl_jax.compress.qlinear import quant_sites, quantize_model
from andesvl_jax.compress.rules import QuantRule


def correlated_layer(seed=0, k=128, n=64, m=512):
    """Inputs with a low-rank correlation structure (like LLM activations) and a weight."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, 16)) @ rng.standard_normal((16, k)) + 0.1 * rng.standard_normal(
        (m, k)
    )
    x[:, :4] *= 8  # a few outlier channels
    w = rng.standard_normal((k, n)) * 0.05
    return x, w, 2 * x.T @ x / m


@pytest.mark.parametrize(
    "rule",
    [
        QuantRule("x", 4, 32),
        QuantRule("x", 3, None),
        QuantRule("x", 2, 64, zero_point=True),
        QuantRule("x", 8, 128),
    ],
    ids=lambda r: r.describe(),
)
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_reconstruction_error(rule, act_order):
    x, w, h = correlated_layer()
    codes_r, s_r, _ = rtn(w, rule)
    codes_g, s_g, z_g = gptq(w, h, rule, act_order=act_order)
    err_rtn = reconstruction_error(x, w, codes_r, s_r, rule.group_size)
    err_gptq = reconstruction_error(x, w, codes_g, s_g, rule.group_size)
    assert err_gptq < 0.5 * err_rtn, (err_gptq, err_rtn)
    # codes stay in the format's range
    qn = 0 if rule.zero_point else 1 << (rule.weight_bits - 1)
    assert codes_g.min() >= -qn - (0 if z_g is None else z_g.max())
    assert codes_g.max() <= (1 << rule.weight_bits) - 1
    # steps are fp16 values (what the deployed model stores)
    np.testing.assert_array_equal(s_g.astype(np.float16).astype(np.float64), s_g)


def test_mse_clipping_beats_absmax_at_low_bits():
    x, w, _ = correlated_layer(1)
    w[::7] *= 6  # heavy tails: absmax wastes range
    rule = QuantRule("x", 3, 32)
    err = {
        c: reconstruction_error(np.eye(128), w, *rtn(w, rule, c)[:2], 32) for c in ("absmax", "mse")
    }
    assert err["mse"] < err["absmax"]


def test_rtn_equals_the_kernel_quantizer():
    """RTN absmax (symmetric) gives the codes of kernels.quant_format.quantize_weight (same steps)."""
    from andesvl_jax.kernels.quant_format import quantize_weight, unpack_weight_codes

    w = np.random.default_rng(3).standard_normal((64, 16)).astype(np.float32)
    codes, s, _ = rtn(w, QuantRule("x", 8, 32))
    pw = quantize_weight(jnp.asarray(w), 8, 32)
    np.testing.assert_array_equal(s, np.asarray(pw.scales, np.float64))
    np.testing.assert_array_equal(codes + 128, np.asarray(unpack_weight_codes(pw)))


CALIB = token_batch(1, batch=4)


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_ptq_model_is_a_qat_model_that_deploys_exactly(method):
    model = quantize_model(tiny_model(scan=False), [QuantRule(r"^llm/", 4, 32, act="a8")])
    apply_ptq(model, method, lambda m: m(CALIB))
    # the fake-quant of the written kernel gives back exactly the PTQ codes
    for site in quant_sites(model):
        c, s = site.module.quantized_weight()
        np.testing.assert_array_equal(site.module.kernel[...], dequantize_codes(c, s))
        assert site.module.a_scale[...] != 1.0  # calibrated
    tokens_q, logits_q = greedy(model, np.array([3, 9, 27], np.int32), 3)
    tokens_d, logits_d = greedy(deploy(model), np.array([3, 9, 27], np.int32), 3)
    assert tokens_q == tokens_d
    np.testing.assert_array_equal(logits_q, logits_d)


def test_gptq_on_a_stacked_model_improves_the_layer_outputs_over_rtn():
    """Per-layer sequential GPTQ on scanned layers: every linear's output error (on its recorded
    calibration inputs) is below RTN's."""
    rule = [QuantRule(r"^llm/", 3, 32)]
    float_model = tiny_model(scan=True)
    run = lambda m: m(CALIB)  # noqa: E731
    models = {
        m: apply_ptq(quantize_model(tiny_model(scan=True), rule), m, run) for m in ("rtn", "gptq")
    }
    ref = quantize_model(
        float_model, rule
    )  # observe on the float kernels: inputs of the float model
    inputs = observe(ref, run)
    better = []
    for name, xs in inputs.items():
        x = np.concatenate(xs)
        layer = int(name.split("/")[2])
        path = name.split("/")[3:]
        errs = {}
        for method, m in models.items():
            mod = getattr(getattr(m.llm.layers, path[0]), path[1])
            wq = np.asarray(dequantize_codes(*mod.quantized_weight()))[layer]
            w = np.asarray(getattr(getattr(float_model.llm.layers, path[0]), path[1]).kernel[...])[
                layer
            ]
            errs[method] = np.sum((x @ w - x @ wq) ** 2)
        better.append(errs["gptq"] < errs["rtn"])
    assert np.mean(better) >= 0.85, better


def test_calibration_sets_static_steps_from_absmax():
    model = quantize_model(
        tiny_model(scan=False), [QuantRule(r"^llm/layers/0/attn/q$", 8, None, act="a8")]
    )
    steps = calibrate_activations(model, lambda m: m(CALIB))
    x = observe(model, lambda m: m(CALIB))["llm/layers/0/attn/q"][0]
    assert steps["llm/layers/0/attn/q"] == pytest.approx(float(np.float16(np.abs(x).max() / 127)))


def test_errors():
    model = quantize_model(tiny_model(scan=False), "w4a8_g32")
    with pytest.raises(ValueError, match="unknown PTQ method 'awq'"):
        apply_ptq(model, "awq")
    with pytest.raises(ValueError, match="GPTQ needs calibration forwards"):
        apply_ptq(model, "gptq")
    with pytest.raises(ValueError, match="static activation quantization needs calibration"):
        apply_ptq(model, "rtn")
    with pytest.raises(ValueError, match="no QuantLinear"):
        apply_ptq(tiny_model(), "rtn")
    with pytest.raises(ValueError, match="never reached"):
        calibrate_activations(model, lambda m: None)
