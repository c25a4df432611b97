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
