"""ScreenSpot (v1/v2) GUI grounding in its public JSON form (screenspot_{mobile,desktop,web}.json).

Each record: {"img_filename": "mobile_0001.png", "bbox": [x, y, w, h] (pixels),
"instruction": "open settings", "data_type": "text" | "icon", "data_source": "ios" | ...}.
Images are looked up under `image_root` (default: the JSON's folder), then `screenspot_imgs/` beside
the JSON or one level up (the layout of the public release). The box becomes [x, y, x+w, y+h] on the
0-1000 scale; the prompt asks for the element's location and `grounding` scores the reply.
`category` is the data_type (text / icon), the split ScreenSpot reports.
"""

from __future__ import annotations

import os
import pathlib

from andesvl_jax.data.boxes import format_box
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.sample import IMAGE_TAG, Message, Sample
from andesvl_jax.eval.readers.base import (
    GROUNDING_PROMPT,
    BenchmarkSet,
    check_on_error,
    collect,
    image_size,
    is_four_finite_numbers,
    load_json_records,
    need,
    pixel_box_to_1000,
    record_position,
    resolve_image,
)


def xywh_to_xyxy(box: list, origin: str) -> list[float]:
    """[x, y, w, h] -> [x1, y1, x2, y2]; DataError unless 4 numbers with w, h > 0."""
    if not is_four_finite_numbers(box):
        raise DataError(
            origin, "bad_box", f"bbox must be [x, y, w, h] finite numbers, got {box!r:.120}"
        )
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise DataError(origin, "bad_box", f"bbox {box!r} has a non-positive width or height")
    return [x, y, x + w, y + h]


def read_screenspot(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    benchmark: str | None = None,
    on_error: str = "raise",
) -> BenchmarkSet:
    """Read a public ScreenSpot JSON file into grounding Samples."""
    path = pathlib.Path(path)
    check_on_error(on_error)
    root = pathlib.Path(image_root) if image_root else path.parent
    fallbacks = [path.parent / "screenspot_imgs", path.parent.parent / "screenspot_imgs"]
    name = benchmark or f"ScreenSpot_{path.stem}"

    def build(rec: dict, origin: str) -> Sample:
        instruction = need(rec, "instruction", origin)
        image = resolve_image(root, need(rec, "img_filename", origin), fallbacks, origin)
        size = image_size(image, origin)
        pixels = xywh_to_xyxy(need(rec, "bbox", origin, list), origin)
        box = pixel_box_to_1000(pixels, size, origin)
        meta = {
            "benchmark": name,
            "index": record_position(origin),
            "task": "grounding",
            "metric": "grounding",
            "box": box,
            "box_pixels": pixels,
            "image_size": list(size),
            "category": str(rec.get("data_type", "unknown")),
            "data_source": str(rec.get("data_source", "unknown")),
        }
        messages = [
            Message("user", f"{IMAGE_TAG}\n{GROUNDING_PROMPT.format(text=instruction)}"),
            Message("assistant", format_box(box)),
        ]
        return Sample(messages, [str(image)], meta=meta, origin=origin)

    return collect(name, path, load_json_records(path), build, on_error)
