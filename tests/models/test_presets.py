"""Presets are the real models: parameter counts (no allocation) within 1% of the published ones."""

import pytest

from andesvl_jax.config import PRESETS, PUBLISHED_PARAMS, get_preset
from andesvl_jax.models.params import count_params


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_published(name):
    total = count_params(PRESETS[name])["total"]
    assert abs(total / PUBLISHED_PARAMS[name] - 1) < 0.01, (name, total)


def test_presets_have_the_documented_towers():
    assert (
        get_preset("0.6b").vision.flavour == "siglip2"
        and get_preset("0.6b").vision.patch_size == 16
    )
    for name in ("1b", "2b", "4b"):
        v = get_preset(name).vision
        assert (v.flavour, v.hidden_size, v.num_layers, v.patch_size, v.pos_grid) == (
            "aimv2",
            1024,
            24,
            14,
            32,
        )
    assert get_preset("4b").text.num_layers == 36 and get_preset("4b").text.hidden_size == 2560
    assert count_params(PRESETS["4b"])["projector"] == 4096 * 4096 + 4096 + 4096 * 2560 + 2560


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model preset"):
        get_preset("7b")


def test_nested_overrides_change_only_the_named_fields():
    cfg = get_preset("1b", vision={"use_rope2d": False}, text={"num_layers": 2}, scan_layers=False)
    assert cfg.vision.use_rope2d is False and cfg.text.num_layers == 2 and not cfg.scan_layers
    base = get_preset("1b")
    assert cfg.vision.hidden_size == base.vision.hidden_size == 1024
    assert cfg.text.hidden_size == base.text.hidden_size and base.vision.use_rope2d
    assert PRESETS["1b"].vision.use_rope2d  # the registry is not mutated


def test_unknown_override_field_is_a_clear_error():
    with pytest.raises(ValueError, match=r"get_preset\('1b'\): unknown VisionConfig field\(s\) "
                       r"vision.use_rope;"):  # fmt: skip
        get_preset("1b", vision={"use_rope": False})
    with pytest.raises(ValueError, match=r"unknown AndesVLConfig field\(s\) scan;"):
        get_preset("tiny", scan=False)
