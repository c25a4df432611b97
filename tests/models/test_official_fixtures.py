"""Parity with the official AndesVL code: every array of ../shared/fixtures, through `verify-import`."""

import dataclasses

import numpy as np
import pytest

from andesvl_jax.cli import main
from andesvl_jax.eval.verify_import import verify

FLAVOURS = ["andesvl_aimv2_tiny", "andesvl_siglip2_tiny"]


@pytest.mark.parametrize("name", FLAVOURS)
def test_every_reference_array_matches(fixtures_dir, name):
    d = fixtures_dir / name
    inputs, expected = dict(np.load(d / "inputs.npz")), dict(np.load(d / "expected.npz"))
    checks = verify(str(d), inputs, expected)
    assert {c.name for c in checks} == set(expected)
    assert [c.name for c in checks if not c.ok] == []
    # The official tolerance is 1e-4 x max(1, max|ref|); we are far inside it.
    logits = next(c for c in checks if c.name == "logits")
    assert logits.max_abs < 1e-4


@pytest.mark.parametrize("name", FLAVOURS)
def test_verify_import_cli_exit_status(fixtures_dir, name, tmp_path, capsys):
    d = fixtures_dir / name
    assert (
        main(
            [
                "verify-import",
                str(d),
                "--inputs",
                str(d / "inputs.npz"),
                "--expected",
                str(d / "expected.npz"),
            ]
        )
        == 0
    )
    assert "0 failed" in capsys.readouterr().out
    # A perturbed reference must make the command fail.
    expected = dict(np.load(d / "expected.npz"))
    expected["logits"] = expected["logits"] + 0.01
    bad = tmp_path / "expected_bad.npz"
    np.savez(bad, **expected)
    assert (
        main(["verify-import", str(d), "--inputs", str(d / "inputs.npz"), "--expected", str(bad)])
        == 1
    )
    assert "FAIL" in capsys.readouterr().out


def _gelu_tanh(x):
    """The tanh approximation of GELU (gelu_pytorch_tanh), written out in numpy."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def test_siglip2_activation_is_a_config_field(fixtures_dir):
    """hidden_act picks the ViT MLP's GELU: exact erf (the vLLM tower, the default) or tanh. Each
    reproduces its own reference arrays and not the other's, and the tanh MLP is the tanh formula."""
    import jax

    from andesvl_jax.convert.loader import load_checkpoint
    from andesvl_jax.eval.verify_import import OUTPUTS

    d = fixtures_dir / "andesvl_siglip2_tiny"
    inputs, expected = dict(np.load(d / "inputs.npz")), dict(np.load(d / "expected.npz"))
    erf, _ = load_checkpoint(d, overrides={"scan_layers": False})
    assert erf.cfg.vision.hidden_act == "gelu"
    vision = dataclasses.replace(erf.cfg.vision, hidden_act="gelu_tanh")
    tanh, _ = load_checkpoint(d, overrides={"scan_layers": False, "vision": vision})
    with jax.default_matmul_precision("highest"):
        ours = {m: np.asarray(OUTPUTS["vision_tower_out"](m, inputs, None)) for m in (erf, tanh)}
        x = np.linspace(-4.0, 4.0, 64 * 5, dtype=np.float32).reshape(5, 64)
        mlp = tanh.vision.layers[0].mlp
        got = np.asarray(mlp(x))
    ref, alt = expected["vision_tower_out"], expected["alt_gelu_tanh_vision_tower_out"]
    # 10x tighter than verify-import's 1e-4 x max|ref|, which the erf/tanh gap (~2e-4 x) is near
    err = lambda m, r: float(np.abs(ours[m] - r).max())  # noqa: E731
    tight = 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert err(erf, ref) <= tight and err(tanh, alt) <= tight
    assert err(tanh, ref) > 10 * tight and err(erf, alt) > 10 * tight  # the paths really differ
    # the MLP of the tanh tower, by hand: fc2(gelu_tanh(fc1(x)))
    w1, b1 = np.asarray(mlp.fc1.kernel.get_value()), np.asarray(mlp.fc1.bias.get_value())
    w2, b2 = np.asarray(mlp.fc2.kernel.get_value()), np.asarray(mlp.fc2.bias.get_value())
    np.testing.assert_allclose(got, _gelu_tanh(x @ w1 + b1) @ w2 + b2, rtol=1e-5, atol=1e-5)
