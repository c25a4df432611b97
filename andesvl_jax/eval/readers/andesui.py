"""AndesUI GUI benchmark: grounding, referring and click-QA records in one JSON (or JSONL) file.

Schema we accept (a .json list of records, or one record per line of a .jsonl file):

    {"image": "screens/0001.png",      # relative to the JSON file's folder (or image_root)
     "task": "grounding",              # grounding | referring | qa (default: the `task=` argument)
     "bbox": [x1, y1, x2, y2],         # pixels of that image; converted to the 0-1000 scale
     "description": "search button",   # grounding: what to find; referring: the reference answer
     "question": "Where do I search?", # qa only: the question whose answer is a box to click
     "id": "g-17",                     # optional; default the record's position
     "category": "settings"}           # optional; reported per category

grounding = description -> box and qa = question -> box are scored by `grounding` (point-in-box);
referring = box -> description is scored by `andesui_referring` (longest common substring).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable

from andesvl_jax.data.boxes import format_box
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.sample import IMAGE_TAG, Message, Sample
from andesvl_jax.eval.readers.base import (
    CLICK_QA_PROMPT,
    GROUNDING_PROMPT,
    REFERRING_PROMPT,
    BenchmarkSet,
    check_on_error,
    collect,
    image_size,
    load_json_records,
    need,
    pixel_box_to_1000,
    record_position,
    resolve_image,
)


@dataclasses.dataclass(frozen=True)
class UiTask:
    """One AndesUI task kind: the prompt from (record, 0-1000 box), the reference, the metric."""

    prompt: Callable[[dict, list[int], str], str]
    reference: Callable[[dict, list[int], str], str]
    metric: str


UI_TASKS: dict[str, UiTask] = {
    "grounding": UiTask(
        lambda rec, box, o: GROUNDING_PROMPT.format(text=need(rec, "description", o)),
        lambda rec, box, o: format_box(box),
        "grounding",
    ),
    "referring": UiTask(
        lambda rec, box, o: REFERRING_PROMPT.format(box=format_box(box)),
        lambda rec, box, o: need(rec, "description", o),
        "andesui_referring",
    ),
    "qa": UiTask(
        lambda rec, box, o: CLICK_QA_PROMPT.format(text=need(rec, "question", o)),
        lambda rec, box, o: format_box(box),
        "grounding",
    ),
}


def read_andesui(
    path: str | os.PathLike,
    task: str | None = None,
    image_root: str | os.PathLike | None = None,
    benchmark: str | None = None,
    on_error: str = "raise",
) -> BenchmarkSet:
    """Read AndesUI records; `task` is the kind of records that carry no 'task' field."""
    path = pathlib.Path(path)
    check_on_error(on_error)
    if task is not None and task not in UI_TASKS:
        raise ValueError(f"task {task!r} unknown; expected one of {sorted(UI_TASKS)}")
    root = pathlib.Path(image_root) if image_root else path.parent
    name = benchmark or "AndesUI"

    def build(rec: dict, origin: str) -> Sample:
        kind = rec.get("task", task) if isinstance(rec, dict) else task
        if not isinstance(kind, str) or kind not in UI_TASKS:
            raise DataError(
                origin, "bad_task", f"task {kind!r:.80} is not one of {sorted(UI_TASKS)}"
            )
        spec = UI_TASKS[kind]
        image = resolve_image(root, need(rec, "image", origin), origin=origin)
        size = image_size(image, origin)
        pixels = need(rec, "bbox", origin, list)
        box = pixel_box_to_1000(pixels, size, origin)
        meta = {
            "benchmark": name,
            "index": rec.get("id", record_position(origin)),
            "task": kind,
            "metric": spec.metric,
            "box": box,
            "box_pixels": pixels,
            "image_size": list(size),
        }
        if rec.get("category") is not None:
            meta["category"] = str(rec["category"])
        reference = spec.reference(rec, box, origin)
        if spec.metric == "andesui_referring":
            meta["answer"] = reference
        messages = [
            Message("user", f"{IMAGE_TAG}\n{spec.prompt(rec, box, origin)}"),
            Message("assistant", reference),
        ]
        return Sample(messages, [str(image)], meta=meta, origin=origin)

    return collect(name, path, load_json_records(path), build, on_error)
