"""Boxes and points on the AndesVL 0-1000 image scale: notation, parsing, geometry, grounding.

The one place that writes and reads locations; the chat data, the eval metrics (`grounding`) and
the GRPO rewards (`box_iou`, `point_in_box`) all go through it, so they cannot disagree.

Written (training targets, benchmark prompts): `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` and the
point `<|box_start|>(x,y)<|box_end|>`, integers on a 0-1000 scale of the image's width and height.
Read (what our data and models emit), each number signed or decimal, spaces anywhere:
  box:   `<|box_start|>(x1,y1),(x2,y2)<|box_end|>`, `(x1,y1),(x2,y2)`, `[x1,y1,x2,y2]`
  point: `<|box_start|>(x,y)<|box_end|>`, `(x,y)`, `[x,y]`

Semantics (AndesUI grounding, DESIGN.md §9):
* a box's corners may come in either order: every box is normalised to x1 <= x2, y1 <= y2;
* an answer's location is the first box or point written in it (leftmost; `(1,2),(3,4)` is one
  box, not the point (1,2)); later ones never count, so extra boxes cannot raise a score;
* hit: the location's point (a point, or a box's centre) lies in the gold box, borders included;
* IoU: of the location's box and the gold box; 0 for a point or when the union has no area.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

BOX_SCALE = 1000
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2), x1 <= x2, y1 <= y2
Point = tuple[float, float]

_NUM = r"\s*([+-]?\d+(?:\.\d+)?)\s*"
_PAIR = rf"\({_NUM},{_NUM}\)"
_OPEN, _CLOSE = re.escape(BOX_START) + r"\s*", r"\s*" + re.escape(BOX_END)
# At one position the first notation that matches wins: tokens before bare pairs, boxes before
# the points they begin with.
_NOTATIONS = {
    "box_tokens": re.compile(rf"{_OPEN}{_PAIR}\s*,\s*{_PAIR}{_CLOSE}"),
    "point_tokens": re.compile(rf"{_OPEN}{_PAIR}{_CLOSE}"),
    "box_pairs": re.compile(rf"{_PAIR}\s*,\s*{_PAIR}"),
    "box_list": re.compile(rf"\[{_NUM},{_NUM},{_NUM},{_NUM}\]"),
    "point_pair": re.compile(_PAIR),
    "point_list": re.compile(rf"\[{_NUM},{_NUM}\]"),
}
_ANY = re.compile("|".join(f"(?P<{name}>{p.pattern})" for name, p in _NOTATIONS.items()))


class Location(NamedTuple):
    """Where an answer points: its box (None if it wrote a point) and its point (the box centre)."""

    box: Box | None
    point: Point


class Grounding(NamedTuple):
    """An answer scored against a gold box: its location (None if none), hit and IoU."""

    location: Location | None
    hit: bool
    iou: float


def normalize_box(box: Sequence[float]) -> Box:
    """(x1, y1, x2, y2) as floats with the corners ordered (x1 <= x2, y1 <= y2)."""
    if len(box) != 4:
        raise ValueError(f"a box is 4 numbers (x1, y1, x2, y2); got {len(box)}: {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def gold_box(meta: Mapping[str, Any], who: str) -> Box:
    """meta['box'] (4 numbers, or its text in any read notation) with the corners ordered.

    `who` (the metric or reward) is named in the error: KeyError if absent, ValueError if it is
    not a box.
    """
    if meta.get("box") is None:
        raise KeyError(f"{who} needs sample meta 'box' = [x1, y1, x2, y2]; got keys {sorted(meta)}")
    value = meta["box"]
    try:
        return normalize_box(parse_box(value) if isinstance(value, str) else value)
    except (TypeError, ValueError):  # None from parse_box, wrong length, not numbers
        raise ValueError(
            f"{who}: sample meta 'box' is not a box [x1, y1, x2, y2]: {value!r}"
        ) from None


def to_box_scale(box: Sequence[float], width: float, height: float) -> Box:
    """A pixel box on a width x height image -> the 0-1000 scale (floats, corners ordered)."""
    x1, y1, x2, y2 = normalize_box(box)
    # x * 1000 / w: one rounding, so integer pixels give the correctly rounded position.
    return (
        x1 * BOX_SCALE / width,
        y1 * BOX_SCALE / height,
        x2 * BOX_SCALE / width,
        y2 * BOX_SCALE / height,
    )


def _scaled_ints(values: Sequence[float]) -> list[int]:
    return [min(max(round(v), 0), BOX_SCALE) for v in values]


def format_box(box: Sequence[float], width: float = BOX_SCALE, height: float = BOX_SCALE) -> str:
    """`<|box_start|>(x1,y1),(x2,y2)<|box_end|>` of a box on a width x height image (default:
    already on the 0-1000 scale); rounded to integers, clipped to 0-1000, corners ordered."""
    x1, y1, x2, y2 = _scaled_ints(to_box_scale(box, width, height))
    return f"{BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}"


def format_point(
    point: Sequence[float], width: float = BOX_SCALE, height: float = BOX_SCALE
) -> str:
    """`<|box_start|>(x,y)<|box_end|>` of a point on a width x height image (default: 0-1000)."""
    x, y = _scaled_ints((point[0] * BOX_SCALE / width, point[1] * BOX_SCALE / height))
    return f"{BOX_START}({x},{y}){BOX_END}"


def box_center(box: Sequence[float]) -> Point:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _location(m: re.Match) -> Location:
    values = [float(v) for v in _NOTATIONS[m.lastgroup].fullmatch(m.group()).groups()]
    if len(values) == 2:
        return Location(None, (values[0], values[1]))
    box = normalize_box(values)
    return Location(box, box_center(box))


def find_locations(text: str) -> list[Location]:
    """Every box and point in `text`, in the order written (none overlapping)."""
    return [_location(m) for m in _ANY.finditer(text)]


def first_location(text: str) -> Location | None:
    """The answer's location: the first box or point written in `text`, or None."""
    m = _ANY.search(text)
    return None if m is None else _location(m)


def parse_boxes(text: str) -> list[Box]:
    """Every box in `text` (corners ordered), in the order written."""
    return [loc.box for loc in find_locations(text) if loc.box is not None]


def parse_box(text: str) -> Box | None:
    """The first box in `text` (corners ordered), or None."""
    boxes = parse_boxes(text)
    return boxes[0] if boxes else None


def parse_point(text: str) -> Point | None:
    """The first point written as a point (not a box corner) in `text`, or None."""
    points = [loc.point for loc in find_locations(text) if loc.box is None]
    return points[0] if points else None


def point_in_box(point: Sequence[float], box: Sequence[float]) -> bool:
    """Whether the point lies inside the box (corners in either order), borders included."""
    x1, y1, x2, y2 = normalize_box(box)
    return x1 <= point[0] <= x2 and y1 <= point[1] <= y2


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (corners in either order); 0 when the union is empty."""
    a, b = normalize_box(a), normalize_box(b)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ground(answer: str, gold: Sequence[float]) -> Grounding:
    """Score an answer's location against the gold box (the module docstring's semantics)."""
    location = first_location(answer)
    if location is None:
        return Grounding(None, False, 0.0)
    overlap = iou(location.box, gold) if location.box is not None else 0.0
    return Grounding(location, point_in_box(location.point, gold), overlap)
