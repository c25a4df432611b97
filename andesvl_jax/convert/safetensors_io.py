"""Lazy safetensors reading (memory-mapped, per tensor, bf16 included) and writing, single or sharded.

The format is an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
data_offsets}} and the raw little-endian data. Reading through `np.memmap` means a tensor (or a slice
of it) is read from disk only when asked for, so a large checkpoint never has to fit in memory.
"""

from __future__ import annotations

import json
import pathlib
import struct

import ml_dtypes
import numpy as np

DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
NAMES = {v: k for k, v in DTYPES.items()}
INDEX_NAME = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint does not match what was expected; the message names the file and tensor."""


def _read_header(path: pathlib.Path) -> tuple[dict, int]:
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path}: truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", raw)
        header_bytes = f.read(n)
    if len(header_bytes) != n:
        raise CheckpointError(
            f"{path}: truncated safetensors header ({len(header_bytes)} of {n} bytes)"
        )
    try:
        header = json.loads(header_bytes)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({e})") from e
    return header, 8 + n


class SafetensorsReader:
    """All tensors of a checkpoint directory (one file or a sharded index), read lazily."""

    def __init__(self, directory: str | pathlib.Path):
        self.directory = pathlib.Path(directory)
        index = self.directory / INDEX_NAME
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.directory.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{self.directory}: no *.safetensors files (and no {INDEX_NAME})")
        self._entries: dict[str, tuple[pathlib.Path, dict, int]] = {}
        self.metadata: dict[str, str] = {}
        for name in files:
            path = self.directory / name
            if not path.exists():
                raise CheckpointError(f"{index}: lists {name}, which does not exist")
            header, offset = _read_header(path)
            self.metadata.update(header.pop("__metadata__", {}) or {})
            size = path.stat().st_size
            for key, entry in header.items():
                if entry["dtype"] not in DTYPES:
                    raise CheckpointError(
                        f"{path}: tensor {key} has unsupported dtype {entry['dtype']}"
                    )
                end = offset + entry["data_offsets"][1]
                if end > size:
                    raise CheckpointError(
                        f"{path}: tensor {key} ends at byte {end} but the file has {size}"
                    )
                self._entries[key] = (path, entry, offset)

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entry(key)[1]["shape"])

    def _entry(self, key: str):
        if key not in self._entries:
            raise CheckpointError(f"{self.directory}: tensor {key!r} not found")
        return self._entries[key]

    def read(self, key: str) -> np.ndarray:
        """The tensor as a read-only memory-mapped array (no copy until used)."""
        path, entry, offset = self._entry(key)
        start, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        if end == start:
            return np.zeros(shape, dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset + start, shape=shape)


def write_safetensors(
    path: str | pathlib.Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write one safetensors file (keys sorted, data 8-byte aligned as the reference writer does)."""
    header: dict[str, dict] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    arrays = {}
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        if arr.dtype not in NAMES:
            raise CheckpointError(
                f"cannot write tensor {key}: dtype {arr.dtype} has no safetensors name"
            )
        arrays[key] = arr
        header[key] = {
            "dtype": NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with pathlib.Path(path).open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for key in sorted(arrays):
            f.write(arrays[key].tobytes())
