"""Official AndesVL image preprocessing per vision flavour: resize/pad to a 2x2-patch canvas.

Reproduces the released code bit for bit (see ../shared/fixtures/*/README.md):
- aimv2 (AndesVL-1B/2B/4B, HF `native_preprocess`): native size rounded *up* to multiples of
  base = 2*patch (an exact multiple still gains one base), boxed resize to an area of max_size**2
  when larger, or to (int(base*sqrt(min_tokens)))**2 when smaller; CLIP mean/std; background =
  int(mean*255).
- siglip2 (AndesVL-0.6B, vLLM `AndesVLImageProcessor`): float rescaling into
  [base**2*4, max_size**2] then ceil to multiples of base; mean = std = 0.5; grey background.
Resizes are PIL `Image.resize(size)` with its default filter (BICUBIC), as in the official code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from PIL import Image

from andesvl_jax.data.images import ImageInput, load_rgb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

FLAVOUR_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "aimv2": (CLIP_MEAN, CLIP_STD),
    "siglip2": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """How images are preprocessed for one model flavour and training stage.

    max_size: area budget, an image is shrunk to about max_size**2 pixels (733 = official chat
      default, 896 / 1792 = the alignment stages, 1792 = official evaluation).
    min_tokens: smaller images are enlarged to at least this many 2x2 patch groups.
    """

    flavour: str = "aimv2"
    patch_size: int = 14
    max_size: int = 733
    min_tokens: int = 4
    max_resolution: int = 4172
    min_size: int = 0  # siglip2 only: lower area bound min_size**2
    image_scale: float = 1.0  # siglip2 only

    @property
    def base(self) -> int:
        return 2 * self.patch_size

    @property
    def mean(self) -> tuple[float, ...]:
        return FLAVOUR_NORMALISATION[self.flavour][0]

    @property
    def std(self) -> tuple[float, ...]:
        return FLAVOUR_NORMALISATION[self.flavour][1]

    def replace(self, **kw) -> ImageSpec:
        return dataclasses.replace(self, **kw)


class ProcessedImage(NamedTuple):
    """pixel_values: [C, H, W] float32 with H, W multiples of 2*patch; grid = (H/patch, W/patch)."""

    pixel_values: np.ndarray
    grid: tuple[int, int]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


# ---------------------------------------------------------------- aimv2 (HF remote code)


def _round_up_plus(v: int, base: int) -> int:
    # The official rounding: v + base - v % base, so an exact multiple still grows by one base.
    return v + base - v % base


def _boxed(img: Image.Image, w: int, h: int, max_area: int, spec: ImageSpec, bg) -> Image.Image:
    """Resize (w, h) to about `max_area` px keeping the aspect.

    Centred on a base-multiple canvas.
    """
    base, cap = spec.base, spec.max_resolution
    aspect = w / h
    bw = max(min(math.floor(math.sqrt(max_area * aspect)), cap), base)
    bh = max(min(math.floor(math.sqrt(max_area / aspect)), cap), base)
    bw, bh = min(_round_up_plus(bw, base), cap), min(_round_up_plus(bh, base), cap)
    s = min(bw / w, bh / h)
    nw, nh = round(w * s), round(h * s)
    canvas = Image.new("RGB", (bw, bh), bg)
    canvas.paste(img.resize((nw, nh)), ((bw - nw) // 2, (bh - nh) // 2))
    return canvas


def aimv2_canvas(img: Image.Image, spec: ImageSpec) -> Image.Image:
    """The official `native_preprocess` (chat path, min_tokens as given): RGB PIL -> canvas."""
    bg = tuple(int(m * 255) for m in spec.mean)
    base, cap = spec.base, spec.max_resolution
    w, h = img.size
    if max(w, h) > cap:
        s = cap / max(w, h)
        w, h = int(w * s), int(h * s)
        img = img.resize((w, h))
    if w * h > spec.max_size**2:
        return _boxed(img, w, h, spec.max_size**2, spec, bg)
    if w * h < base * base * spec.min_tokens:
        return _boxed(img, w, h, int(base * spec.min_tokens**0.5) ** 2, spec, bg)
    w1, h1 = _round_up_plus(w, base), _round_up_plus(h, base)
    s = min(w1 / w, h1 / h)
    nw, nh = int(w * s), int(h * s)
    canvas = Image.new("RGB", (w1, h1), bg)
    canvas.paste(img.resize((nw, nh)), ((w1 - nw) // 2, (h1 - nh) // 2))
    return canvas


# ---------------------------------------------------------------- siglip2 (vLLM evaluation code)


def siglip2_canvas(img: Image.Image, spec: ImageSpec) -> Image.Image:
    """The official `AndesVLImageProcessor.process` resize/pad step: RGB PIL -> canvas."""
    base = spec.base
    w0, h0 = img.size
    w, h = w0 * spec.image_scale, h0 * spec.image_scale
    if max(w, h) > spec.max_resolution:
        f = spec.max_resolution / max(w, h)
        w, h = w * f, h * f
    # Float rescaling, in the official order: minimum token count, min_size, then max_size.
    for lower, upper in (
        (base * base * 4, None),
        (spec.min_size**2, None),
        (None, spec.max_size**2),
    ):
        if lower is not None and w * h < lower:
            f = math.sqrt(lower / (w * h))
            w, h = w * f, h * f
        if upper is not None and w * h > upper:
            f = math.sqrt(upper / (w * h))
            w, h = w * f, h * f
    tw, th = math.ceil(w / base) * base, math.ceil(h / base) * base
    if (tw, th) == (w0, h0):
        return img
    s = min(tw / w0, th / h0)
    rw, rh = w0 * s, h0 * s  # floats; the truncations below are the official ones
    canvas = Image.new("RGB", (tw, th), tuple(int(m * 255) for m in spec.mean))
    canvas.paste(img.resize((int(rw), int(rh))), (int((tw - rw) / 2), int((th - rh) / 2)))
    return canvas


CANVAS_FNS: dict[str, Callable[[Image.Image, ImageSpec], Image.Image]] = {
    "aimv2": aimv2_canvas,
    "siglip2": siglip2_canvas,
}


def make_canvas(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """RGB PIL image -> the official resized/padded canvas, uint8 [H, W, 3]."""
    if spec.flavour not in CANVAS_FNS:
        raise ValueError(
            f"vision flavour {spec.flavour!r} unknown; expected one of {sorted(CANVAS_FNS)}"
        )
    return np.asarray(CANVAS_FNS[spec.flavour](img, spec).convert("RGB"), dtype=np.uint8)


def normalize(canvas: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, H, W] = (canvas/255 - mean)/std.

    In float32, like ToTensor + Normalize.
    """
    x = canvas.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    return (x - mean) / std


def preprocess_image(
    source: ImageInput, spec: ImageSpec, origin: str = "<image>"
) -> ProcessedImage:
    """Any image input -> `ProcessedImage` (pixel_values [3, H, W], patch grid)."""
    canvas = make_canvas(load_rgb(source, origin), spec)
    p = spec.patch_size
    return ProcessedImage(normalize(canvas, spec), (canvas.shape[0] // p, canvas.shape[1] // p))


def preprocess_within_budget(
    source: ImageInput, spec: ImageSpec, max_patches: int, origin: str = "<image>"
) -> tuple[ProcessedImage, bool]:
    """Preprocess; if the result has more than `max_patches` patches, shrink max_size until it fits.

    Returns (image, downscaled?). The caller counts downscales: they are legal but should be rare.
    """
    img = load_rgb(source, origin)
    out, shrunk, cur = None, False, spec
    while True:
        canvas = make_canvas(img, cur)
        p = cur.patch_size
        out = ProcessedImage(normalize(canvas, cur), (canvas.shape[0] // p, canvas.shape[1] // p))
        if out.num_patches <= max_patches or cur.max_size <= cur.base:
            break
        # Area scales with max_size**2; aim slightly under the budget so the round-up still fits.
        new = int(cur.max_size * math.sqrt(max_patches / out.num_patches) * 0.95)
        cur = cur.replace(max_size=max(cur.base, min(new, cur.max_size - 1)), min_tokens=1)
        shrunk = True
    return out, shrunk
