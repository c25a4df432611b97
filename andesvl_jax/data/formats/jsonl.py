"""Line-indexed JSON/JSONL readers for the real formats: LLaVA, interleaved, preference, RL.

Each reader is random access (grain source): the file is scanned once for line offsets, a record
is parsed on access and converted by its format's `to_sample`. A bad line is a DataError naming
file:line and what was wrong. Image paths are resolved against `image_root` (default: the file's
directory) and must stay inside it (`path_outside_root` otherwise: `../`, absolute paths elsewhere,
symlinks out).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.images import image_path_under
from andesvl_jax.data.sample import Message, Sample

LLAVA_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def _paths(value, root: pathlib.Path, origin: str) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in items):
        raise DataError(origin, "bad_field", f"image paths must be strings, got {items!r:.80}")
    return [image_path_under(root, v, origin) for v in items]


def _need(rec: dict, key: str, origin: str, kind=str):
    if key not in rec:
        raise DataError(
            origin, "missing_field", f"record has no {key!r} field (keys: {sorted(rec)})"
        )
    if not isinstance(rec[key], kind):
        raise DataError(
            origin, "bad_field", f"{key!r} must be {kind.__name__}, got {type(rec[key]).__name__}"
        )
    return rec[key]


def llava_to_sample(rec: dict, root: pathlib.Path, origin: str) -> Sample:
    """{"image": str | [str], "conversations": [{"from": "human"|"gpt", "value": str}, ...]}"""
    msgs = []
    for i, turn in enumerate(_need(rec, "conversations", origin, list)):
        if not isinstance(turn, dict) or "value" not in turn or turn.get("from") not in LLAVA_ROLES:
            raise DataError(
                origin,
                "bad_field",
                f"conversations[{i}] must have 'from' in {sorted(LLAVA_ROLES)} and 'value'",
            )
        msgs.append(Message(LLAVA_ROLES[turn["from"]], str(turn["value"])))
    return Sample(msgs, _paths(rec.get("image", rec.get("images")), root, origin), origin=origin)


def interleaved_to_sample(rec: dict, root: pathlib.Path, origin: str) -> Sample:
    """{"text": "... <image> ...", "images": [str, ...]}"""
    return Sample(
        [Message("user", _need(rec, "text", origin))],
        _paths(rec.get("images"), root, origin),
        kind="document",
        origin=origin,
    )


def preference_to_sample(rec: dict, root: pathlib.Path, origin: str) -> Sample:
    """{"prompt": str, "images": [str], "chosen": str, "rejected": str}.

    Trains on `chosen` by default.
    """
    chosen, rejected = _need(rec, "chosen", origin), _need(rec, "rejected", origin)
    return Sample(
        [Message("user", _need(rec, "prompt", origin)), Message("assistant", chosen)],
        _paths(rec.get("images"), root, origin),
        origin=origin,
        meta={"chosen": chosen, "rejected": rejected},
    )


def rl_to_sample(rec: dict, root: pathlib.Path, origin: str) -> Sample:
    """{"prompt": str, "images": [str], "answer": str}: a prompt with a checkable answer (GRPO)."""
    answer = rec.get("answer")
    if answer is None:
        raise DataError(origin, "missing_field", "record has no 'answer' field")
    return Sample(
        [Message("user", _need(rec, "prompt", origin))],
        _paths(rec.get("images"), root, origin),
        origin=origin,
        meta={"answer": str(answer), "difficulty": rec.get("difficulty")},
    )


class JsonlSource:
    """Random-access records of a .jsonl file (one JSON object per line) or a .json list."""

    def __init__(
        self,
        path: str | os.PathLike,
        to_sample: Callable[[dict, pathlib.Path, str], Sample],
        image_root: str | os.PathLike | None = None,
    ):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"dataset file not found: {self.path}")
        self.root = pathlib.Path(image_root) if image_root else self.path.parent
        self.to_sample = to_sample
        self._records: list[Any] | None = None
        self._offsets: list[tuple[int, int]] = []  # (line number, byte offset) of non-empty lines
        if self.path.suffix == ".json":
            self._load_json_list()
        else:
            self._index_lines()

    def _load_json_list(self) -> None:
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{self.path}:{e.lineno}", "malformed_json", e.msg) from None
        except (UnicodeDecodeError, RecursionError) as e:
            raise DataError(str(self.path), "malformed_json", f"{type(e).__name__}: {e}") from None
        if not isinstance(data, list):
            raise DataError(
                str(self.path), "malformed_json", "a .json dataset must be a list of records"
            )
        self._records = data

    def _index_lines(self) -> None:
        with open(self.path, "rb") as f:
            offset = 0
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    self._offsets.append((lineno, offset))
                offset += len(line)

    def __len__(self) -> int:
        return len(self._records) if self._records is not None else len(self._offsets)

    def locate(self, index: int) -> dict:
        """Where record `index` lives: {"file", "line"} (.jsonl) or {"file", "record"} (.json)."""
        if self._records is not None:
            return {"file": str(self.path), "record": index}
        return {"file": str(self.path), "line": self._offsets[index][0]}

    def __getitem__(self, index: int) -> Sample:
        if self._records is not None:
            rec, origin = self._records[index], f"{self.path}[{index}]"
        else:
            lineno, offset = self._offsets[index]
            origin = f"{self.path}:{lineno}"
            with open(self.path, "rb") as f:
                f.seek(offset)
                line = f.readline()
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise DataError(origin, "malformed_json", str(e)) from None
        if not isinstance(rec, dict):
            raise DataError(
                origin, "malformed_json", f"expected a JSON object, got {type(rec).__name__}"
            )
        return self.to_sample(rec, self.root, origin)

    def __repr__(self) -> str:
        return f"JsonlSource({self.path}, {len(self)} records)"
