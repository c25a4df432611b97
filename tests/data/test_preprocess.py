"""Official preprocessing parity on the fixtures, mode conversion, EXIF, and bad images."""

import io

import numpy as np
import pytest
from PIL import Image

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.images import load_rgb
from andesvl_jax.data.patches import patchify_2x2
from andesvl_jax.data.preprocess import (
    ImageSpec,
    make_canvas,
    preprocess_image,
    preprocess_within_budget,
)

FLAVOURS = {
    "aimv2": ImageSpec("aimv2", 14, max_size=733),
    "siglip2": ImageSpec("siglip2", 16, max_size=1792),
}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_fixture_parity_exact(fixtures_dir, flavour):
    d = np.load(fixtures_dir / f"andesvl_{flavour}_tiny" / "inputs.npz")
    spec = FLAVOURS[flavour]
    flat = []
    for i in range(2):
        canvas = make_canvas(load_rgb(d[f"image_{i}"]), spec)
        np.testing.assert_array_equal(canvas, d[f"preprocessed_image_{i}"])
        out = preprocess_image(d[f"image_{i}"], spec)
        np.testing.assert_array_equal(out.pixel_values, d[f"pixel_values_{i}"])
        assert list(out.grid) == list(d["image_grid_hw"][i])
        flat.append(patchify_2x2(out.pixel_values, spec.patch_size)[0])
    np.testing.assert_array_equal(np.concatenate(flat), d["flat_pixel_values"])


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("size", [(5, 7), (28, 28), (300, 40), (2000, 1500), (5000, 30)])
def test_canvas_is_2x2_patch_multiple_and_within_budget(flavour, size):
    spec = FLAVOURS[flavour]
    out = preprocess_image(np.full((size[1], size[0], 3), 100, np.uint8), spec)
    h, w = out.pixel_values.shape[1:]
    assert h % spec.base == 0 and w % spec.base == 0
    # Never more than the area budget plus the one-base round-up on each side.
    assert h * w <= (spec.max_size + spec.base) ** 2 + spec.base * max(h, w) * 2


def test_budget_downscale():
    img = np.random.default_rng(0).integers(0, 255, (700, 900, 3), np.uint8)
    out, shrunk = preprocess_within_budget(img, ImageSpec(max_size=1792), max_patches=256)
    assert shrunk and out.num_patches <= 256
    out2, shrunk2 = preprocess_within_budget(img, ImageSpec(max_size=1792), max_patches=10**6)
    assert not shrunk2 and out2.num_patches > 256


def _encode(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_modes_convert_to_rgb(mode):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30, 3), np.uint8))
    img = (
        base.convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
    )
    out = load_rgb(img)
    assert out.mode == "RGB" and out.size == (30, 20)


def test_16bit_is_rescaled_not_clipped():
    a = np.full((4, 4), 65535, np.uint16)
    a[0, 0] = 0
    out = np.asarray(load_rgb(Image.fromarray(a)))
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 0
    a2 = np.full((4, 4), 32768, np.uint16)
    assert 120 < np.asarray(load_rgb(Image.fromarray(a2)))[0, 0, 0] < 135


def test_transparent_pixels_become_white():
    a = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    assert (np.asarray(load_rgb(Image.fromarray(a))) == 255).all()


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = load_rgb(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_bad_images_are_clear_errors(tmp_path):
    good = _encode(Image.new("RGB", (64, 64), (0, 128, 0)), "JPEG")
    cases = {
        "corrupt_image": good[: len(good) // 2],  # truncated
        "corrupt_image ": b"not an image at all",
    }
    for reason, data in cases.items():
        with pytest.raises(DataError) as e:
            load_rgb(data, origin="x.jsonl:3")
        assert e.value.reason == reason.strip() and "x.jsonl:3" in str(e.value)
    with pytest.raises(DataError, match="missing_image.*nope.png"):
        load_rgb(str(tmp_path / "nope.png"), origin="o")
    with pytest.raises(DataError, match="degenerate_image"):
        load_rgb(np.zeros((1, 5000, 3), np.uint8))
    with pytest.raises(DataError, match="degenerate_image"):
        load_rgb(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(DataError, match="extreme_aspect"):
        load_rgb(np.zeros((2, 5000, 3), np.uint8))
