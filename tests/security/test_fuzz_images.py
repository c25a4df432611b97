"""Hostile images (data/images.py, data/preprocess.py): mutated files of every format, headers
claiming 100 000 x 100 000 pixels, animated and multi-frame files, EXIF rotation, slivers, every
mode, NaN/Inf in pixels and metadata. Contract: an RGB image (repaired where needed) that preprocesses
to finite pixels, or a DataError naming the image."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from fuzzlib import examples, mutated, run_case
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, TiffImagePlugin

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.images import MAX_PIXELS, load_rgb, probe_image
from andesvl_jax.data.preprocess import ImageSpec, preprocess_image

ORIGIN = "fuzz/img-17.bin"
SPEC = ImageSpec(flavour="aimv2", patch_size=14, max_size=112)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w=24, h=16) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 10 % 256, y * 15 % 256, (x + y) * 5 % 256], -1).astype(np.uint8)


def _seeds() -> dict[str, bytes]:
    rgb = Image.fromarray(_gradient())
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    frames = [Image.fromarray(_gradient()[:, :, [i, 1, 2]]) for i in range(3)]
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return {
        "png": _encode(rgb, "PNG"),
        "jpeg_exif": _encode(rgb, "JPEG", exif=exif.tobytes()),
        "gif_animated": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "png_palette_alpha": _encode(pal, "PNG", transparency=0),
        "png16": _encode(Image.fromarray(_gradient()[..., 0].astype(np.uint16) * 257), "PNG"),
        "tiff_cmyk": _encode(rgb.convert("CMYK"), "TIFF"),
        "bmp": _encode(rgb, "BMP"),
        "webp": _encode(rgb.convert("RGBA"), "WEBP"),
        "tiff_multi": _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
    }


SEEDS = _seeds()


def _decode_and_preprocess(source):
    img = load_rgb(source, ORIGIN)
    assert img.mode == "RGB"
    out = preprocess_image(img, SPEC)
    assert np.isfinite(out.pixel_values).all()
    return img


@given(kind=st.sampled_from(sorted(SEEDS)), data=st.data())
@examples(250)
def test_mutated_image_files(kind, data):
    blob = data.draw(mutated(SEEDS[kind]))
    run_case("images", lambda: _decode_and_preprocess(blob), where=ORIGIN)


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "I", "I;16", "F", "PA", "HSV", "LAB"]
FORMATS = {"PNG", "TIFF", "JPEG", "BMP", "GIF", "WEBP"}


@given(
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(sorted(FORMATS)),
    w=st.one_of(st.integers(1, 40), st.sampled_from([1, 2, 401, 900])),
    h=st.one_of(st.integers(1, 40), st.sampled_from([1, 2, 3])),
    orientation=st.sampled_from([None, 1, 3, 6, 8, 0, 9, 65535]),
)
@examples(200)
def test_every_mode_size_and_orientation(mode, fmt, w, h, orientation):
    rng = np.random.default_rng(w * 1000 + h)
    base = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    try:
        img = base.convert(mode) if mode not in ("I;16",) else base.convert("L").convert("I;16")
        kw = {}
        if orientation is not None and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
            exif = Image.Exif()
            exif[0x0112] = orientation
            kw["exif"] = exif.tobytes()
        blob = _encode(img, fmt, **kw)
    except (OSError, ValueError, KeyError, TypeError):
        return  # Pillow cannot write this mode in this format: no file to test
    decoded_mode = Image.open(io.BytesIO(blob)).mode
    rotated = orientation is not None and fmt in ("JPEG", "PNG", "TIFF", "WEBP")
    needs_fix = decoded_mode != "RGB" or (rotated and orientation != 1)
    out = run_case("images", lambda: _decode_and_preprocess(blob), where=ORIGIN, fixed=needs_fix)
    if isinstance(out, DataError):
        assert out.reason in ("degenerate_image", "extreme_aspect", "corrupt_image"), out
        assert min(w, h) < 2 or max(w, h) / min(w, h) > 200, out
    elif rotated and orientation in (6, 8):
        assert out.size == (h, w)  # EXIF rotation applied


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(w: int, h: int, mode: int = 2) -> bytes:
    """A PNG whose header claims w x h pixels but holds a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, mode, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def gif_claiming(w: int, h: int) -> bytes:
    w, h = min(w, 65_535), min(h, 65_535)
    return (
        b"GIF89a"
        + struct.pack("<HH", w, h)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", w, h)
        + b"\x00\x02\x02D\x01\x00;"
    )


def bmp_claiming(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + bytes(64)


@given(
    side=st.sampled_from([100_000, 65_535, 30_000, 12_000, 10_001]),  # GIF/BMP: clipped to u16
    other=st.sampled_from([100_000, 30_000, 10_000, 9_000]),
    kind=st.sampled_from(["png", "gif", "bmp"]),
)
@examples(60)
def test_decompression_bomb_headers(side, other, kind):
    blob = {"png": png_claiming, "gif": gif_claiming, "bmp": bmp_claiming}[kind](side, other)
    err = run_case("images", lambda: load_rgb(blob, ORIGIN), where=ORIGIN)
    assert isinstance(err, DataError), "a bomb must never decode"
    if kind == "png" and side * other > MAX_PIXELS:
        assert err.reason in ("image_too_large", "corrupt_image"), err
    probe = run_case("images", lambda: probe_image(blob, ORIGIN), where=ORIGIN)
    if kind == "png" and side * other > MAX_PIXELS:
        assert isinstance(probe, DataError) and probe.reason in ("image_too_large", "corrupt_image")


def test_100k_by_100k_header_is_refused_as_too_large():
    err = run_case("images", lambda: load_rgb(png_claiming(100_000, 100_000), ORIGIN), where=ORIGIN)
    assert isinstance(err, DataError) and err.reason == "image_too_large"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_float_pixels_and_metadata(bad):
    a = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    a[3, 3] = bad
    tags = TiffImagePlugin.ImageFileDirectory_v2()  # NaN/Inf in the metadata too (double, float)
    tags[50000], tags.tagtype[50000] = float("nan"), 12
    tags[50001], tags.tagtype[50001] = float("inf"), 11
    blob = _encode(Image.fromarray(a, mode="F"), "TIFF", tiffinfo=tags)
    img = run_case("images", lambda: _decode_and_preprocess(blob), where=ORIGIN, fixed=True)
    assert np.asarray(img)[3, 3].tolist() == [0, 0, 0]


@given(
    arr=st.sampled_from(
        [
            np.zeros((0, 5), np.uint8),
            np.zeros((4, 4, 2), np.uint8),
            np.zeros((4, 4, 1), np.uint8),
            np.zeros((4, 4, 3), np.float32),
            np.zeros((4, 4, 3, 1), np.uint8),
            np.zeros((4, 4, 5), np.uint8),
            np.zeros((3, 3), np.int64),
        ]
    )
)
@examples(7)
def test_bad_arrays(arr):
    run_case("images", lambda: _decode_and_preprocess(arr), where=ORIGIN, fixed=arr.ndim == 3)


def test_corrupt_exif_survives_a_second_pass():
    # Found at scale 10: load_rgb's output kept the EXIF bytes, and preprocess_image (which calls
    # load_rgb again) re-parsed the corrupt block: SyntaxError "not a TIFF file", named "<image>".
    exif = b"Exif\x00\x00LM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06"
    blob = _encode(Image.fromarray(_gradient()), "JPEG", exif=exif + bytes(6))
    img = run_case("images", lambda: _decode_and_preprocess(blob), where=ORIGIN)
    assert "exif" not in img.info
