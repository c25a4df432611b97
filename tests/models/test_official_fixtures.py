"""Parity with the official AndesVL code: every array of ../shared/fixtures, through `verify-import`."""

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


def test_siglip2_activation_is_a_config_field(fixtures_dir):
    """The exact-erf and tanh GELU variants are different computations and each matches its reference."""
    from andesvl_jax.convert.loader import load_checkpoint

    d = fixtures_dir / "andesvl_siglip2_tiny"
    model, _ = load_checkpoint(d)
    assert model.cfg.vision.hidden_act == "gelu"
    expected = np.load(d / "expected.npz")
    assert (
        np.abs(expected["vision_tower_out"] - expected["alt_gelu_tanh_vision_tower_out"]).max()
        > 1e-4
    )
