"""Procedural drawing for the synthetic corpus: shapes, Latin text, CJK numerals, charts, widgets.

No font or image files: Latin text uses Pillow's embedded default font, CJK numerals are stroke
drawings defined here. Everything is a pure function of its arguments (deterministic).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "purple": (140, 40, 180),
    "orange": (250, 130, 10),
    "black": (10, 10, 10),
}
BACKGROUND = (245, 245, 240)


def _circle(d: ImageDraw.ImageDraw, box, colour) -> None:
    d.ellipse(box, fill=colour)


def _square(d: ImageDraw.ImageDraw, box, colour) -> None:
    d.rectangle(box, fill=colour)


def _triangle(d: ImageDraw.ImageDraw, box, colour) -> None:
    x0, y0, x1, y1 = box
    d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


SHAPES: dict[str, Callable[[ImageDraw.ImageDraw, tuple, tuple], None]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
}

# Stroke glyphs in a unit box: one polyline per stroke. Enough CJK script for an OCR task.
CJK_GLYPHS: dict[str, list[list[tuple[float, float]]]] = {
    "一": [[(0.1, 0.5), (0.9, 0.5)]],
    "二": [[(0.2, 0.3), (0.8, 0.3)], [(0.1, 0.75), (0.9, 0.75)]],
    "三": [[(0.2, 0.2), (0.8, 0.2)], [(0.25, 0.5), (0.75, 0.5)], [(0.1, 0.82), (0.9, 0.82)]],
    "四": [
        [(0.15, 0.2), (0.85, 0.2), (0.85, 0.85), (0.15, 0.85), (0.15, 0.2)],
        [(0.42, 0.2), (0.35, 0.6)],
        [(0.6, 0.2), (0.6, 0.6), (0.75, 0.6)],
    ],
    "五": [
        [(0.15, 0.15), (0.85, 0.15)],
        [(0.45, 0.15), (0.35, 0.85)],
        [(0.25, 0.5), (0.72, 0.5), (0.68, 0.85)],
        [(0.08, 0.85), (0.92, 0.85)],
    ],
    "六": [
        [(0.48, 0.06), (0.55, 0.2)],
        [(0.1, 0.35), (0.9, 0.35)],
        [(0.4, 0.5), (0.2, 0.85)],
        [(0.6, 0.5), (0.8, 0.85)],
    ],
    "七": [[(0.1, 0.48), (0.9, 0.36)], [(0.4, 0.1), (0.4, 0.8), (0.9, 0.85)]],
    "八": [[(0.4, 0.2), (0.15, 0.85)], [(0.6, 0.2), (0.85, 0.85)]],
    "九": [
        [(0.1, 0.35), (0.6, 0.35), (0.6, 0.8), (0.9, 0.8)],
        [(0.4, 0.1), (0.3, 0.6), (0.1, 0.85)],
    ],
    "十": [[(0.1, 0.5), (0.9, 0.5)], [(0.5, 0.1), (0.5, 0.9)]],
}


def new_canvas(
    width: int, height: int, colour=BACKGROUND
) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (width, height), colour)
    return img, ImageDraw.Draw(img)


@functools.lru_cache(maxsize=128)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The embedded font at `size` px, loaded once per size (loading costs more than drawing)."""
    return ImageFont.load_default(size=max(6, int(size)))


def draw_shape(d: ImageDraw.ImageDraw, shape: str, box, colour_name: str) -> None:
    SHAPES[shape](d, box, COLOURS[colour_name])


def draw_text(
    d: ImageDraw.ImageDraw, xy, text: str, size: int, colour=(0, 0, 0)
) -> tuple[int, int, int, int]:
    """Latin text at xy; returns its pixel bounding box."""
    f = font(size)
    d.text(xy, text, fill=colour, font=f)
    return tuple(int(v) for v in d.textbbox(xy, text, font=f))


def draw_cjk(d: ImageDraw.ImageDraw, xy, text: str, size: int, colour=(0, 0, 0)) -> None:
    """CJK numerals as strokes, one size x size cell per character."""
    x0, y0 = xy
    width = max(1, size // 8)
    for i, ch in enumerate(text):
        for stroke in CJK_GLYPHS[ch]:
            pts = [(x0 + i * size + u * size, y0 + v * size) for u, v in stroke]
            d.line(pts, fill=colour, width=width, joint="curve")


def grid_cells(width: int, height: int, n: int, rng) -> list[tuple[int, int, int, int]]:
    """n non-overlapping cell boxes from a grid covering the canvas, in random cells."""
    cols = rows = 1
    while cols * rows < n:
        if cols <= rows:
            cols += 1
        else:
            rows += 1
    cols, rows = cols + 1, rows + 1  # spare cells so layouts vary
    cw, ch = width // cols, height // rows
    cells = rng.choice(cols * rows, size=n, replace=False)
    out = []
    for c in cells:
        r, k = divmod(int(c), cols)
        pad = max(2, min(cw, ch) // 8)
        out.append((k * cw + pad, r * ch + pad, (k + 1) * cw - pad, (r + 1) * ch - pad))
    return out


def position_word(box, width: int, height: int) -> str:
    """'top left' ... 'bottom right' / 'center' from a box's centre on a 3x3 grid."""
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    v = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    h = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "center"
    return "center" if (v, h) == ("middle", "center") else f"{v} {h}"
