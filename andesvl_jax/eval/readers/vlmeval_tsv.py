"""VLMEvalKit TSV benchmarks (MMBench, POPE, ChartQA, ... as the official AndesVL fork ships them).

Columns: `index`, `question`, `answer`, and `image` (base64; a value of <= 64 characters is the
`index` of another row whose image it reuses; a "['b64', ...]" list is several images) or
`image_path` (path or list of paths relative to `image_root`, default the TSV's folder). Optional:
`A`..`J` (options), `hint`, `category`, `l2-category`. Images stay encoded bytes (checked to be an
image by their header) and are decoded to pixels by `data.images.load_rgb` when used.

The task (prompt style + default metric) comes from `task=`, else from the benchmark name
(BENCHMARKS, longest matching prefix of the file stem), else from the columns: options -> multiple
choice, only yes/no answers -> yes/no, otherwise short answer. Prompts follow VLMEvalKit's
(TASKS). Row problems are DataErrors "file.tsv:LINE [index=X]: reason: ..." naming the column.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import Any

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.images import image_path_under, probe_image
from andesvl_jax.data.sample import IMAGE_TAG, Message, Sample
from andesvl_jax.eval.metrics import LETTERS
from andesvl_jax.eval.readers.base import BenchmarkSet, check_metric, check_on_error, collect

MCQ_INSTRUCTION = "Please select the correct answer from the options above."
YES_NO_INSTRUCTION = "Please answer yes or no."
SHORT_ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."
_CSV_FIELD_LIMIT = 2**31 - 1  # base64 images are far longer than csv's 128 KiB default


def _present(row: dict[str, str], key: str) -> str | None:
    value = row.get(key)
    return value if value not in (None, "", "nan", "NaN") else None


def options_of(row: dict[str, str]) -> dict[str, str]:
    """The non-empty option columns A..J of a row, in order."""
    return {k: row[k] for k in LETTERS if _present(row, k) is not None}


def multiple_choice_prompt(row: dict[str, str]) -> str:
    """VLMEvalKit ImageMCQDataset: [Hint:] Question:, Options: A. ..., the select instruction."""
    hint = _present(row, "hint")
    lines = [f"Hint: {hint}"] if hint is not None else []
    lines += [f"Question: {row['question']}", "Options:"]
    lines += [f"{k}. {v}" for k, v in options_of(row).items()]
    return "\n".join([*lines, MCQ_INSTRUCTION])


def yes_no_prompt(row: dict[str, str]) -> str:
    """The question + ' Please answer yes or no.' (kept once: MME questions already carry it)."""
    question = row["question"].strip()
    return question if question.endswith(YES_NO_INSTRUCTION) else f"{question} {YES_NO_INSTRUCTION}"


def open_prompt(row: dict[str, str]) -> str:
    """The question cell as it is (VLMEvalKit's ImageBaseDataset prompt: OCRBench, MathVista)."""
    return row["question"].strip()


def short_answer_prompt(row: dict[str, str]) -> str:
    """The question + '\\nAnswer the question using a single word or phrase.'"""
    return f"{row['question'].strip()}\n{SHORT_ANSWER_INSTRUCTION}"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """How a task kind prompts and which metric scores it by default."""

    prompt: Callable[[dict[str, str]], str]
    metric: str


TASKS: dict[str, TaskSpec] = {
    "multiple_choice": TaskSpec(multiple_choice_prompt, "multiple_choice"),
    "yes_no": TaskSpec(yes_no_prompt, "yes_no"),
    "short_answer": TaskSpec(short_answer_prompt, "vqa_accuracy"),
    "open": TaskSpec(open_prompt, "exact_match"),
}
# Columns with a meaning of their own; any other non-empty cell goes to meta["fields"] (MathVista's
# question_type/answer_type/choices/precision, MME's image_path, ...), for the metrics that need it.
_KNOWN_COLUMNS = frozenset(
    ["index", "question", "answer", "image", "hint", "category", "l2-category"]
)

# Benchmark-name prefix (case-insensitive) -> (task, metric).
BENCHMARKS: dict[str, tuple[str, str]] = {
    "MMBench": ("multiple_choice", "mmbench_circular"),
    "MMStar": ("multiple_choice", "multiple_choice"),
    "AI2D": ("multiple_choice", "multiple_choice"),
    "ScienceQA": ("multiple_choice", "multiple_choice"),
    "SEEDBench": ("multiple_choice", "multiple_choice"),
    "RealWorldQA": ("multiple_choice", "multiple_choice"),
    "MMMU": ("multiple_choice", "multiple_choice"),
    "BLINK": ("multiple_choice", "multiple_choice"),
    "MUIRBench": ("multiple_choice", "multiple_choice"),
    "POPE": ("yes_no", "pope"),
    "MME": ("yes_no", "mme"),
    "OCRBench": ("open", "ocrbench"),
    "MathVista": ("open", "mathvista"),
    "HallusionBench": ("yes_no", "yes_no"),
    "ChartQA": ("short_answer", "relaxed_accuracy"),
    "DocVQA": ("short_answer", "anls"),
    "InfoVQA": ("short_answer", "anls"),
    "TextVQA": ("short_answer", "vqa_accuracy"),
    "VQAv2": ("short_answer", "vqa_accuracy"),
    "OK-VQA": ("short_answer", "vqa_accuracy"),
}


def _benchmark_task(name: str) -> tuple[str, str] | None:
    hits = [p for p in BENCHMARKS if name.lower().startswith(p.lower())]
    return BENCHMARKS[max(hits, key=len)] if hits else None


def _columns_task(columns: list[str], rows: list[dict[str, str]]) -> tuple[str, str]:
    if "A" in columns and "B" in columns:
        return "multiple_choice", "multiple_choice"
    answers = {str(r.get("answer", "")).strip().lower() for r in rows}
    if answers and answers <= {"yes", "no"}:
        return "yes_no", "yes_no"
    return "short_answer", "vqa_accuracy"


def _list_literal(value: str, origin: str, column: str) -> list[str]:
    try:
        items = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as e:
        raise DataError(
            origin, "bad_field", f"column {column!r}: not a list literal: {e}"
        ) from None
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise DataError(origin, "bad_field", f"column {column!r}: expected a list of strings")
    return list(items)


def decode_base64_image(value: str, origin: str, column: str = "image") -> bytes:
    """Base64 text -> image bytes, checked by reading the image header; DataError otherwise."""
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise DataError(
            origin, "bad_base64", f"column {column!r} is not valid base64: {e}"
        ) from None
    try:
        probe_image(data, origin)
    except DataError as e:
        raise DataError(
            origin, e.reason, f"column {column!r} decodes to no usable image: {e.detail}"
        ) from None
    return data


def _answers(value: str) -> list[str]:
    # VQA-style TSVs store the human answers as a Python list literal in `answer`.
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            items = ast.literal_eval(text)
            if isinstance(items, list | tuple) and items:
                return [str(i) for i in items]
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            pass
    return [value]


class _RowBuilder:
    """Turns one TSV row into a Sample (the per-row half of read_vlmeval_tsv)."""

    def __init__(self, name, task, metric, image_map, image_root, require_answer):
        self.name, self.task, self.metric = name, task, metric
        self.image_map, self.image_root = image_map, image_root
        self.require_answer = require_answer

    def images(self, row: dict[str, str], origin: str) -> list[Any]:
        value = _present(row, "image")
        if value is not None:
            if len(value) <= 64:  # VLMEvalKit's space saver: the index of a row with the image
                value = self.image_map.get(value.strip())
                if value is None or len(value) <= 64:
                    raise DataError(
                        origin,
                        "bad_image_ref",
                        f"column 'image' refers to index {row['image']!r}, which has no image",
                    )
            texts = _list_literal(value, origin, "image") if value.startswith("[") else [value]
            return [decode_base64_image(t, origin, "image") for t in texts]
        value = _present(row, "image_path")
        if value is None:
            raise DataError(origin, "missing_image", "both 'image' and 'image_path' are empty")
        paths = _list_literal(value, origin, "image_path") if value.startswith("[") else [value]
        out = []
        for p in paths:
            full = pathlib.Path(image_path_under(self.image_root, p, origin))
            if not full.is_file():
                raise DataError(origin, "missing_image", f"column 'image_path': {full} not found")
            out.append(str(full))
        return out

    def image_group(self, row: dict[str, str]) -> str:
        """Which image a row asks about: its `image_path`, else the index its short `image` cell
        refers to, else its own index (MME pairs two questions per image this way)."""
        path = _present(row, "image_path")
        if path is not None:
            return path.strip()
        value = _present(row, "image")
        if value is not None and len(value) <= 64:
            return value.strip()
        return row["index"].strip()

    def meta_and_reference(self, row: dict[str, str], origin: str) -> tuple[dict, str | None]:
        index = row["index"].strip()
        meta: dict[str, Any] = {
            "benchmark": self.name,
            "index": int(index) if index.lstrip("-").isdigit() else index,
            "task": self.task,
            "metric": self.metric,
            "question": row["question"],
        }
        for column, key in [("category", "category"), ("l2-category", "l2_category")]:
            if _present(row, column) is not None:
                meta[key] = row[column]
        meta["image_group"] = self.image_group(row)
        fields = {
            k: v
            for k, v in row.items()
            if k not in _KNOWN_COLUMNS and k not in LETTERS and _present(row, k) is not None
        }
        if fields:
            meta["fields"] = fields
        answer = _present(row, "answer")
        if answer is None:
            if self.require_answer:
                raise DataError(origin, "missing_answer", "column 'answer' is empty")
            return meta, None
        if self.task == "multiple_choice":
            meta["options"] = options_of(row)
            if not meta["options"]:
                raise DataError(origin, "no_options", "multiple-choice row has no A..J options")
            if answer.strip().upper() not in meta["options"]:
                raise DataError(
                    origin,
                    "bad_answer",
                    f"column 'answer' is {answer!r}, not one of {sorted(meta['options'])}",
                )
            answer = answer.strip().upper()
        elif self.task == "yes_no":
            answer = answer.strip().lower()
            if answer not in ("yes", "no"):
                raise DataError(origin, "bad_answer", f"column 'answer' is {answer!r}, not yes/no")
        else:
            meta["answers"] = _answers(answer)
            answer = meta["answers"][0]
        meta["answer"] = answer
        return meta, answer

    def __call__(self, row: dict[str, str], origin: str) -> Sample:
        if None in row or any(v is None for v in row.values()):
            raise DataError(origin, "malformed_row", "row has a different number of fields")
        meta, reference = self.meta_and_reference(row, origin)
        images = self.images(row, origin)
        text = f"{IMAGE_TAG}\n" * len(images) + TASKS[self.task].prompt(row)
        messages = [Message("user", text)]
        if reference is not None:
            messages.append(Message("assistant", reference))
        return Sample(messages, images, meta=meta, origin=origin)


def read_vlmeval_tsv(
    path: str | os.PathLike,
    benchmark: str | None = None,
    task: str | None = None,
    metric: str | None = None,
    image_root: str | os.PathLike | None = None,
    on_error: str = "raise",
    require_answer: bool = True,
) -> BenchmarkSet:
    """Read a VLMEvalKit TSV into Samples; `benchmark` defaults to the file stem."""
    path = pathlib.Path(path)
    check_on_error(on_error)
    check_metric(metric)
    if task is not None and task not in TASKS:
        raise ValueError(f"task {task!r} unknown; expected one of {sorted(TASKS)}")
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    rows = []
    start = 2  # the header is line 1
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            columns = list(reader.fieldnames or [])
            for row in reader:
                rows.append((start, row))
                start = reader.line_num + 1
    except (UnicodeDecodeError, csv.Error) as e:  # e.g. not UTF-8, a NUL byte
        raise DataError(f"{path}:{start}", "malformed_tsv", f"{type(e).__name__}: {e}") from None
    required = ["index", "question"] + (["answer"] if require_answer else [])
    missing = [c for c in required if c not in columns]
    if "image" not in columns and "image_path" not in columns:
        missing.append("image (or image_path)")
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns found: {columns}")
    name = benchmark or path.stem
    found = _benchmark_task(name) or _columns_task(columns, [r for _, r in rows])
    task = task or found[0]
    metric = metric or (found[1] if task == found[0] else TASKS[task].metric)
    image_map = {r["index"].strip(): r.get("image") or "" for _, r in rows if r.get("index")}
    build = _RowBuilder(
        name, task, metric, image_map, pathlib.Path(image_root or path.parent), require_answer
    )
    origins = (
        (f"{path}:{line} [index={str(r.get('index') or '').strip()}]", r) for line, r in rows
    )
    seen: set[str] = set()

    def build_unique(row: dict[str, str], origin: str) -> Sample:
        index = str(row.get("index") or "").strip()
        if not index or index in seen:
            raise DataError(origin, "bad_index", f"index {index!r} is empty or repeated")
        seen.add(index)
        return build(row, origin)

    return collect(name, path, origins, build_unique, on_error)
