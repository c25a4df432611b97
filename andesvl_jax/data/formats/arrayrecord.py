"""ArrayRecord corpora: one record per Sample, JSON with the image bytes inlined (base64).

Self-contained (no image paths to go stale), random access, and what grain reads fastest. Write
with `write_arrayrecord(path, samples)`, read with `ArrayRecordSource(path)`.
"""

from __future__ import annotations

import base64
import bisect
import io
import itertools
import json
import os

import numpy as np
from PIL import Image

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.sample import Message, Sample

ROLES = frozenset({"system", "user", "assistant"})


def _image_bytes(img) -> bytes:
    """Encoded bytes of an image input: files are copied as is, arrays/PIL images become PNG."""
    if isinstance(img, bytes):
        return img
    if isinstance(img, str | os.PathLike):
        with open(img, "rb") as f:
            return f.read()
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def sample_to_record(sample: Sample) -> bytes:
    rec = {
        "kind": sample.kind,
        "messages": [
            {"role": m.role, "content": m.content, "reasoning": m.reasoning}
            for m in sample.messages
        ],
        "images": [base64.b64encode(_image_bytes(im)).decode() for im in sample.images],
        "meta": sample.meta,
        "origin": sample.origin,
    }
    return json.dumps(
        rec, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)
    ).encode()


def _message(m, i: int) -> Message:
    if not isinstance(m, dict):
        raise TypeError(f"messages[{i}] is a {type(m).__name__}, expected an object")
    role, content, reasoning = m["role"], m["content"], m.get("reasoning")
    if role not in ROLES or not isinstance(content, str) or not isinstance(reasoning, str | None):
        raise TypeError(
            f"messages[{i}] needs role in {sorted(ROLES)}, content str, reasoning str or null"
        )
    return Message(role, content, reasoning)


def record_to_sample(data: bytes, origin: str) -> Sample:
    try:
        rec = json.loads(data)
        if not isinstance(rec, dict):
            raise TypeError(f"record is a {type(rec).__name__}, expected a JSON object")
        if not isinstance(rec["messages"], list) or not isinstance(rec["images"], list):
            raise TypeError("'messages' and 'images' must be lists")
        msgs = [_message(m, i) for i, m in enumerate(rec["messages"])]
        # validate=True: text that is not base64 is an error here, not garbage bytes later
        images = [base64.b64decode(b, validate=True) for b in rec["images"]]
        kind, meta = rec.get("kind", "chat"), rec.get("meta", {})
        if not isinstance(kind, str) or not isinstance(meta, dict):
            raise TypeError("'kind' must be a string and 'meta' an object")
    except (ValueError, KeyError, TypeError, RecursionError) as e:  # also UTF-8 / base64 errors
        raise DataError(origin, "malformed_record", f"{type(e).__name__}: {e}") from None
    return Sample(msgs, images, kind=kind, meta=meta, origin=origin)


def write_arrayrecord(path: str | os.PathLike, samples) -> int:
    """Write samples to one ArrayRecord file; returns the number written."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(os.fspath(path), "group_size:1")
    n = 0
    try:
        for s in samples:
            writer.write(sample_to_record(s))
            n += 1
    finally:
        writer.close()
    return n


class ArrayRecordSource:
    """Random-access Samples from one or more ArrayRecord files."""

    def __init__(self, paths: str | os.PathLike | list):
        import grain

        self.paths = [os.fspath(p) for p in (paths if isinstance(paths, list) else [paths])]
        for p in self.paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"ArrayRecord file not found: {p}")
        try:
            self._source = grain.sources.ArrayRecordDataSource(self.paths)
            # Global index -> (file, record within that file); grain concatenates files in order.
            self._ends = (
                [len(self._source)]
                if len(self.paths) == 1
                else list(
                    itertools.accumulate(
                        len(grain.sources.ArrayRecordDataSource([p])) for p in self.paths
                    )
                )
            )
        except Exception as e:  # noqa: BLE001 - the C++ reader raises RuntimeError/ValueError/...
            raise DataError(
                ",".join(self.paths), "malformed_file", f"not a readable ArrayRecord file: {e}"
            ) from None

    def __len__(self) -> int:
        return len(self._source)

    def locate(self, index: int) -> dict:
        """Where record `index` lives: {"file": path, "record": index within that file}."""
        f = bisect.bisect_right(self._ends, index)
        return {"file": self.paths[f], "record": index - (self._ends[f - 1] if f else 0)}

    def __getitem__(self, index: int) -> Sample:
        loc = self.locate(index)
        origin = f"{loc['file']}#{loc['record']}"
        try:
            data = self._source[index]
        except IndexError:
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt chunk fails inside the C++ reader
            raise DataError(origin, "malformed_record", f"cannot read record: {e}") from None
        return record_to_sample(data, origin)

    def __getstate__(self):
        return {"paths": self.paths}

    def __setstate__(self, state):
        self.__init__(state["paths"])
