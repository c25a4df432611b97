"""Every bad record of a dataset scan: one JSONL line each on disk, as found, and N kept per kind.

A line is ``{"file", "line" | "record", ["image", "image_path"], "kind", "message"}``: `line` for
line-indexed files (.jsonl), `record` (0-based, within `file`) for .json lists, ArrayRecord and
TFDS; `image` (0-based, in the sample's image order) when one image is the problem.

Lines are written straight to the final path, each in one unbuffered write, rather than to a
temporary file renamed at the end: on a million-record scan the point is to have what was found
so far — readable while the scan runs (``tail -f``) and left in place when it crashes or is killed
— and a rename would hide all of it until a clean exit. One write per whole line means an
interrupted run leaves complete lines (no fsync: a process crash keeps the page cache, only a
machine crash can lose the tail). Memory stays O(kinds × show), not O(bad records).
"""

from __future__ import annotations

import collections
import json
import os

from andesvl_jax.data.errors import DataError


def record_location(source, index: int) -> dict:
    """{"file", "line" | "record"} of record `index`, from the reader's `locate` when it has one."""
    locate = getattr(source, "locate", None)
    if locate is not None:
        return locate(index)
    return {"file": str(getattr(source, "path", type(source).__name__)), "record": index}


def format_location(entry: dict) -> str:
    """``file:line`` / ``file#record``, plus `` image[k] (path)`` when an image is at fault."""
    where = (
        f"{entry['file']}:{entry['line']}"
        if "line" in entry
        else f"{entry['file']}#{entry['record']}"
    )
    if "image" in entry:
        where += f" image[{entry['image']}]"
        if "image_path" in entry:
            where += f" ({entry['image_path']})"
    return where


class BadRecordLog:
    """Counts bad records per kind, keeps the first `show` of each, writes all to `path` (JSONL)."""

    def __init__(self, path: str | os.PathLike | None = None, show: int = 5):
        if show < 0:
            raise ValueError(f"show must be >= 0, got {show}")
        self.path, self.show = (os.fspath(path) if path else None), show
        self.counts: collections.Counter[str] = collections.Counter()
        self.shown: dict[str, list[dict]] = {}
        self._file = open(self.path, "wb", buffering=0) if self.path else None

    def add(self, location: dict, err: DataError, images=()) -> dict:
        """Log one bad record (`images`: the sample's image inputs, to name a bad image's path)."""
        entry = dict(location)
        if err.image is not None:
            entry["image"] = err.image
            src = images[err.image] if err.image < len(images) else None
            if isinstance(src, str | os.PathLike):
                entry["image_path"] = os.fspath(src)
        entry["kind"], entry["message"] = err.reason, err.detail
        self.counts[err.reason] += 1
        kept = self.shown.setdefault(err.reason, [])
        if len(kept) < self.show:
            kept.append(entry)
        if self._file is not None:
            line = (json.dumps(entry) + "\n").encode()
            if self._file.write(line) != len(line):
                raise OSError(f"short write to {self.path} (disk full?)")
        return entry

    def more(self, kind: str) -> int:
        """How many records of `kind` were logged but not kept for the printed report."""
        return self.counts[kind] - len(self.shown.get(kind, ()))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> BadRecordLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
