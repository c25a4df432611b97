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


def record_to_sample(data: bytes, origin: str) -> Sample:
    try:
        rec = json.loads(data)
        msgs = [Message(m["role"], m["content"], m.get("reasoning")) for m in rec["messages"]]
        images = [base64.b64decode(b) for b in rec["images"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(origin, "malformed_record", f"{type(e).__name__}: {e}") from None
    return Sample(
        msgs, images, kind=rec.get("kind", "chat"), meta=rec.get("meta", {}), origin=origin
    )


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

    def __len__(self) -> int:
        return len(self._source)

    def locate(self, index: int) -> dict:
        """Where record `index` lives: {"file": path, "record": index within that file}."""
        f = bisect.bisect_right(self._ends, index)
        return {"file": self.paths[f], "record": index - (self._ends[f - 1] if f else 0)}

    def __getitem__(self, index: int) -> Sample:
        loc = self.locate(index)
        return record_to_sample(self._source[index], f"{loc['file']}#{loc['record']}")

    def __getstate__(self):
        return {"paths": self.paths}

    def __setstate__(self, state):
        self.__init__(state["paths"])
