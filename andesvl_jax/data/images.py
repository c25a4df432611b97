"""Decode any image input to an RGB PIL image: EXIF orientation, every common mode, clear errors.

Inputs may be a path, raw bytes, a PIL image or a uint8 array [H, W] / [H, W, 3|4]. Mode handling
is a registry (MODE_TO_RGB) rather than a chain of ifs. Deliberate deviation from the official
loader (`img.convert('RGB')`): images with alpha are composited on white, because plain convert
keeps whatever colour sits under fully transparent pixels (often black); RGB inputs — all of the
official fixtures — are unaffected.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from andesvl_jax.data.errors import DataError

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray

# Sides below this or aspect ratios above this are rejected: such an image cannot be rounded to a
# 2x2-patch grid without either an empty side or a huge mostly-padding canvas.
MIN_SIDE = 2
MAX_ASPECT = 200.0


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _high_bit_depth(img: Image.Image) -> Image.Image:
    # 16-bit / 32-bit integer and float greyscale: rescale to 0..255 (convert('RGB') would clip).
    a = np.asarray(img, dtype=np.float64)
    top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
    if img.mode == "F" and a.max(initial=0) <= 1.0:
        top = 1.0
    g = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([g, g, g], -1), "RGB")


def _palette(img: Image.Image) -> Image.Image:
    if "transparency" in img.info:
        return _composite_on_white(img)
    return img.convert("RGB")


MODE_TO_RGB: dict[str, Callable[[Image.Image], Image.Image]] = {
    "RGB": lambda img: img,
    "L": lambda img: img.convert("RGB"),
    "1": lambda img: img.convert("RGB"),
    "CMYK": lambda img: img.convert("RGB"),
    "YCbCr": lambda img: img.convert("RGB"),
    "LAB": lambda img: img.convert("RGB"),
    "HSV": lambda img: img.convert("RGB"),
    "P": _palette,
    "PA": _composite_on_white,
    "LA": _composite_on_white,
    "La": _composite_on_white,
    "RGBA": _composite_on_white,
    "RGBa": _composite_on_white,
    "I": _high_bit_depth,
    "I;16": _high_bit_depth,
    "I;16B": _high_bit_depth,
    "I;16L": _high_bit_depth,
    "F": _high_bit_depth,
}


def _open(source: ImageInput, origin: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise DataError(
                origin,
                "bad_image_array",
                f"expected uint8 [H,W] or [H,W,C], got {source.dtype} {source.shape}",
            )
        return Image.fromarray(source)
    try:
        if isinstance(source, bytes):
            return Image.open(io.BytesIO(source))
        path = os.fspath(source)
        if not os.path.exists(path):
            raise DataError(origin, "missing_image", f"image file not found: {path}")
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(origin, "corrupt_image", f"cannot decode image: {e}") from None


def load_rgb(source: ImageInput, origin: str = "<image>") -> Image.Image:
    """Decode, apply EXIF orientation and convert to RGB; raise DataError on anything unusable."""
    img = _open(source, origin)
    try:
        img.load()  # force full decode so truncated files fail here, not deep inside a resize
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(origin, "corrupt_image", f"cannot decode image: {e}") from None
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise DataError(
            origin, "degenerate_image", f"image is {w}x{h} px; both sides must be >= {MIN_SIDE}"
        )
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise DataError(
            origin, "extreme_aspect", f"image is {w}x{h} px; aspect ratio > {MAX_ASPECT:g}"
        )
    convert = MODE_TO_RGB.get(img.mode)
    if convert is None:
        raise DataError(origin, "unsupported_mode", f"image mode {img.mode!r} is not supported")
    return convert(img)
