"""The vision tower as LiteRT sections (encoder + adapter) equals our tower in ai_edge_litert, on the
official tiny fixtures of both flavours; a grid the 2x2 shuffle cannot take is refused."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="LiteRT export needs tensorflow-cpu (test extra)")
pytest.importorskip("ai_edge_litert", reason="section checks need ai-edge-litert (test extra)")

from andesvl_jax.export.litert_vision import (  # noqa: E402
    ADAPTER,
    ENCODER,
    vision_errors,
    vision_tflites,
)

from andesvl_jax.infer.load import load_model  # noqa: E402


@pytest.mark.parametrize("fixture", ["andesvl_aimv2_tiny", "andesvl_siglip2_tiny"])
def test_sections_match_our_tower(fixtures_dir, fixture):
    model, _ = load_model(fixtures_dir / fixture)
    p = model.cfg.vision.patch_size
    tflites = vision_tflites(model, 4, 6)
    assert set(tflites) == {ENCODER, ADAPTER}
    image = np.random.default_rng(0).normal(size=(3, 4 * p, 6 * p)).astype(np.float32)
    errors = vision_errors(model, tflites, image)
    for part in ("encoder", "adapter", "tower"):
        assert errors[f"{part}_max_rel"] < 1e-5, errors


def test_odd_grid_is_refused(fixtures_dir):
    model, _ = load_model(fixtures_dir / "andesvl_aimv2_tiny")
    with pytest.raises(ValueError, match="even"):
        vision_tflites(model, 3, 4)
