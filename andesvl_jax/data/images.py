"""Decode any image input to an RGB PIL image: EXIF orientation, every common mode, clear errors.

Inputs may be a path, raw bytes, a PIL image or a uint8 array [H, W] / [H, W, 3|4]. Mode handling
is a registry (MODE_TO_RGB) rather than a chain of ifs. Deliberate deviation from the official
loader (`img.convert('RGB')`): images with alpha are composited on white, because plain convert
keeps whatever colour sits under fully transparent pixels (often black); RGB inputs — all of the
official fixtures — are unaffected.

Hostile files: the declared size is checked from the header before any pixel is decoded
(MAX_PIXELS, below the 179 MP at which Pillow raises DecompressionBombError, also caught); any failure of a
decoder — Pillow's plugins raise many exception types on corrupt data — is a DataError
`corrupt_image` naming the origin, never a traceback from inside Pillow. Multi-frame images
(GIF, APNG, TIFF) use their first frame.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from andesvl_jax.data.errors import DataError

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray

# Sides below this or aspect ratios above this are rejected: such an image cannot be rounded to a
# 2x2-patch grid without either an empty side or a huge mostly-padding canvas.
MIN_SIDE = 2
MAX_ASPECT = 200.0
# Largest image decoded: 100 MP (e.g. 12 000 x 8 000; a 108 MP phone photo is refused), i.e. at
# most ~400 MB of RGBA while decoding. Header sizes above it are refused before any decode.
MAX_PIXELS = 100_000_000


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _high_bit_depth(img: Image.Image) -> Image.Image:
    # 16-bit / 32-bit integer and float greyscale: rescale to 0..255 (convert('RGB') would clip).
    a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
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


def _decode_error(origin: str, e: BaseException) -> DataError:
    if isinstance(e, Image.DecompressionBombError):
        return DataError(origin, "image_too_large", f"decompression bomb refused: {e}")
    return DataError(origin, "corrupt_image", f"cannot decode image: {type(e).__name__}: {e}")


def _check_size(img: Image.Image, origin: str) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise DataError(
            origin,
            "image_too_large",
            f"image header claims {w}x{h} = {w * h} px; at most {MAX_PIXELS} are decoded",
        )


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
        if source.ndim == 3 and source.shape[2] not in (1, 3, 4):
            raise DataError(
                origin, "bad_image_array", f"expected 1, 3 or 4 channels, got {source.shape}"
            )
        return Image.fromarray(source[..., 0] if source.ndim == 3 and source.shape[2] == 1 else source)
    if not isinstance(source, bytes | str | os.PathLike):
        raise DataError(origin, "bad_image_array", f"not an image input: {type(source).__name__}")
    try:
        if isinstance(source, bytes):
            img = Image.open(io.BytesIO(source))
        else:
            path = os.fspath(source)
            if not os.path.isfile(path):
                raise DataError(origin, "missing_image", f"image file not found: {path}")
            img = Image.open(path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure on hostile bytes is corrupt_image
        raise _decode_error(origin, e) from None
    _check_size(img, origin)
    return img


def probe_image(source: str | os.PathLike | bytes, origin: str = "<image>") -> tuple[int, int]:
    """(width, height) from the header only, with the same checks as `load_rgb` before decoding."""
    img = _open(source, origin)
    with img:
        return img.size


def load_rgb(source: ImageInput, origin: str = "<image>") -> Image.Image:
    """Decode, apply EXIF orientation and convert to RGB; raise DataError on anything unusable."""
    img = _open(source, origin)
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()  # force full decode so truncated files fail here, not deep inside a resize
        img = ImageOps.exif_transpose(img)
    except Exception as e:  # noqa: BLE001 - OSError, SyntaxError, struct.error, ... from plugins
        raise _decode_error(origin, e) from None
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
    try:
        out = convert(img)
    except Exception as e:  # noqa: BLE001 - e.g. a palette whose transparency entry is malformed
        raise _decode_error(origin, e) from None
    # The orientation is applied; drop the EXIF bytes so that feeding the result back into
    # load_rgb (preprocess_image does) cannot re-parse a corrupt EXIF block (found by the fuzz
    # suite: SyntaxError from the TIFF parser on the second pass). `out` is never the caller's
    # image: exif_transpose returns a new one.
    out.info.pop("exif", None)
    out.info.pop("Raw profile type exif", None)
    return out


def image_path_under(root: str | os.PathLike, value: str, origin: str) -> str:
    """`value` (relative, or absolute inside `root`) joined to the image root; a DataError
    `path_outside_root` when it resolves outside the root (`../../etc/passwd`, an absolute path
    elsewhere, a symlink pointing out), so a dataset cannot make us read arbitrary files."""
    if "\0" in value:
        raise DataError(origin, "bad_field", f"image path {value!r:.80} contains a NUL byte")
    joined = os.path.join(root, value)
    real_root = os.path.realpath(root)
    real = os.path.realpath(joined)
    if os.path.commonpath([real_root, real]) != real_root:
        raise DataError(
            origin,
            "path_outside_root",
            f"image path {value!r:.120} resolves to {real}, outside the image root {real_root}",
        )
    return joined
