"""What every benchmark reader shares: the BenchmarkSet result, on_error policy, GUI box helpers.

A reader turns one benchmark file into a BenchmarkSet: Samples (a user turn with the prompt, then an
assistant turn with the reference answer, so `sample.prompt` is what a generator is given) whose
`meta` carries what the metric needs, plus a SkipStats count. File-level problems (missing file,
missing columns) raise; a bad row raises a DataError naming file and row, or under
`on_error="skip"` becomes a counted, listed skip.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from andesvl_jax.data.boxes import to_box_scale
from andesvl_jax.data.errors import ON_ERROR_POLICIES, DataError, Skipped, SkipStats, apply_policy
from andesvl_jax.data.images import image_path_under, probe_image
from andesvl_jax.data.sample import Sample
from andesvl_jax.eval.metrics import METRICS


@dataclasses.dataclass
class BenchmarkSet:
    """The samples of one benchmark file, with counts of rows read ('ok') and skipped per reason."""

    name: str
    path: str
    samples: list[Sample]
    stats: SkipStats
    skipped: list[Skipped] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def report(self, max_listed: int = 20) -> dict[str, Any]:
        """JSON-friendly summary: counts per outcome and the first skipped rows with reasons."""
        return {
            "name": self.name,
            "path": self.path,
            "samples": len(self.samples),
            "stats": self.stats.to_json(),
            "skipped": [f"{s.origin}: {s.reason}: {s.detail}" for s in self.skipped[:max_listed]],
        }


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_POLICIES:
        raise ValueError(
            f"on_error={on_error!r} unknown; expected one of {sorted(ON_ERROR_POLICIES)}"
        )


def check_metric(metric: str | None) -> None:
    if metric is not None and metric not in METRICS:
        raise ValueError(f"metric {metric!r} unknown; expected one of {sorted(METRICS)}")


def collect(
    name: str,
    path: os.PathLike | str,
    rows: Iterable[tuple[str, Any]],
    build: Callable[[Any, str], Sample],
    on_error: str,
) -> BenchmarkSet:
    """Build a Sample from every (origin, row); DataErrors follow the on_error policy."""
    check_on_error(on_error)
    samples, skipped, stats = [], [], SkipStats()
    for origin, row in rows:
        out = apply_policy(on_error, build, row, origin)
        if isinstance(out, Skipped):
            stats.add_skip(out)
            skipped.append(out)
        else:
            stats["ok"] += 1
            samples.append(out)
    return BenchmarkSet(name, os.fspath(path), samples, stats, skipped)


def load_json_records(path: pathlib.Path) -> list[tuple[str, Any]]:
    """(origin, record) pairs of a .json list ('file.json#i') or a .jsonl ('file.jsonl:line')."""
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    if path.suffix == ".jsonl":
        out = []
        for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            if raw.strip():
                try:
                    out.append((f"{path}:{lineno}", json.loads(raw.decode("utf-8"))))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}", "malformed_json", e.msg) from None
                except (UnicodeDecodeError, RecursionError) as e:
                    raise DataError(
                        f"{path}:{lineno}", "malformed_json", f"{type(e).__name__}: {e}"
                    ) from None
        return out
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}", "malformed_json", e.msg) from None
    except (UnicodeDecodeError, RecursionError) as e:
        raise DataError(str(path), "malformed_json", f"{type(e).__name__}: {e}") from None
    if not isinstance(data, list):
        raise DataError(
            str(path),
            "malformed_json",
            f"expected a JSON list of records, got {type(data).__name__}",
        )
    return [(f"{path}#{i}", rec) for i, rec in enumerate(data)]


def record_position(origin: str) -> int:
    """The record's number: its position in a .json list ('#i') or line in a .jsonl (':line')."""
    return int(origin.replace("#", ":").rsplit(":", 1)[-1])


def need(rec: Any, key: str, origin: str, kind: type | tuple[type, ...] = str) -> Any:
    """rec[key], checked to be present and of the given type; DataError otherwise."""
    if not isinstance(rec, dict):
        raise DataError(origin, "bad_record", f"expected a JSON object, got {type(rec).__name__}")
    if key not in rec:
        raise DataError(origin, "missing_field", f"record has no {key!r} (keys: {sorted(rec)})")
    if not isinstance(rec[key], kind):
        raise DataError(
            origin, "bad_field", f"{key!r} must be {kind}, got {type(rec[key]).__name__}"
        )
    return rec[key]


def image_size(path: pathlib.Path, origin: str) -> tuple[int, int]:
    """(width, height) read from the image header only (pixels are decoded later)."""
    if not path.is_file():
        raise DataError(origin, "missing_image", f"image file not found: {path}")
    return probe_image(path, origin)


def is_four_finite_numbers(box) -> bool:
    """A box annotation as read from JSON: exactly 4 finite ints/floats (bools are not numbers)."""
    return len(box) == 4 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box
    )


def pixel_box_to_1000(box: list, size: tuple[int, int], origin: str) -> list[int]:
    """[x1, y1, x2, y2] in pixels -> the same box on the 0-1000 scale of the image.

    Corners up to the image border are clamped (annotations often overshoot by a pixel); a box that
    is not 4 numbers, has no area, or lies outside the image is a DataError.
    """
    if not is_four_finite_numbers(box):
        raise DataError(origin, "bad_box", f"box must be 4 finite numbers, got {box!r:.120}")
    w, h = size
    x1, y1, x2, y2 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if not (x1 < x2 and y1 < y2):
        raise DataError(origin, "bad_box", f"box {box!r} has no area inside the {w}x{h} image")
    return [round(v) for v in to_box_scale((x1, y1, x2, y2), w, h)]


def resolve_image(
    root: pathlib.Path, rel: str, fallbacks: Iterable[pathlib.Path] = (), origin: str = "<record>"
) -> pathlib.Path:
    """The image path under root, else under the first fallback that has it. It must stay inside
    that folder (DataError `path_outside_root`: `../`, absolute paths elsewhere, symlinks out)."""
    for base in [root, *fallbacks]:
        try:
            candidate = pathlib.Path(image_path_under(base, rel, origin))
        except DataError:
            continue
        if candidate.is_file():
            return candidate
    return pathlib.Path(image_path_under(root, rel, origin))  # outside: raises; else missing


# GUI prompts (ours: the public release does not show the AndesUI/ScreenSpot prompt wording). The
# answer format they ask for is the model's: a box on the 0-1000 scale (DESIGN.md section 5).
GROUNDING_PROMPT = (
    "Locate the element in this screenshot described as: {text}\n"
    "Answer with its bounding box on a 0-1000 scale."
)
CLICK_QA_PROMPT = "{text}\nAnswer with the bounding box of the element to click on a 0-1000 scale."
REFERRING_PROMPT = "Describe the element at {box} in this screenshot in a short phrase."
