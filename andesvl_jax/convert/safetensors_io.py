"""A checkpoint directory's tensors (one safetensors file or a sharded index) through the
`safetensors` library, read per tensor or per slice, and the writer.

Only glue is ours: the sharded index (`model.safetensors.index.json`), errors that name the file and
tensor, and the guards the library lacks (non-contiguous writes, zero-size slices, truncation).
"""

from __future__ import annotations

import json
import os
import pathlib
import struct

# Registers 'bfloat16' (and float8) with numpy by name; safetensors' numpy reader looks BF16 up by
# that name and fails with "data type 'bfloat16' not understood" when ml_dtypes was never imported.
import ml_dtypes  # noqa: F401
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save, save_file

from andesvl_jax.data.atomic_io import WriteError, atomic_path

INDEX_NAME = "model.safetensors.index.json"
# The safetensors library refuses headers above 100 MB; we refuse them before reading any.
MAX_HEADER_BYTES = 100 * 2**20
MAX_INDEX_BYTES = 100 * 2**20


class CheckpointError(ValueError):
    """A checkpoint does not match what was expected; the message names the file and tensor."""


def _truncation(path: pathlib.Path) -> str:
    """Which tensor a short file cuts (error path only: the library says only 'file not fully
    covered'); '' when the header itself is unreadable."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, MAX_HEADER_BYTES):
                return f"; its header claims {n} bytes but the file has {size}"
            header = json.loads(f.read(n))
        ends = {k: 8 + n + v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"}
    except (struct.error, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return ""
    cut = sorted((end, k) for k, end in ends.items() if end > size)
    return f"; tensor {cut[0][1]} ends at byte {cut[0][0]} but the file has {size}" if cut else ""


def _check_header_size(path: pathlib.Path) -> None:
    """Refuse a header length that is absurd or runs past the file, before anything reads it."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(
            f"{path}: not a readable safetensors file: {size} bytes, shorter than the 8-byte "
            "header length"
        )
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise CheckpointError(
            f"{path}: not a readable safetensors file: its header claims {n} bytes, but the file "
            f"has {size} (at most {MAX_HEADER_BYTES} header bytes are accepted)"
        )


def _open(path: pathlib.Path):
    _check_header_size(path)
    try:
        return safe_open(path, framework="np")
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({e}){_truncation(path)}"
        ) from e


def _weight_map(index: pathlib.Path) -> dict[str, str]:
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError(f"{index.stat().st_size} bytes, over {MAX_INDEX_BYTES}")
        weight_map = json.loads(index.read_bytes().decode("utf-8"))["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError(f"weight_map is a {type(weight_map).__name__}")
    except (ValueError, KeyError, TypeError, RecursionError) as e:  # JSON / UTF-8 errors too
        raise CheckpointError(
            f"{index}: not a safetensors index (a JSON object with a 'weight_map' of "
            f"tensor -> file): {type(e).__name__}: {e}"
        ) from e
    for key, name in weight_map.items():
        # A file name, nothing else: an index must not point outside its directory.
        if (
            not isinstance(name, str)
            or not name
            or name != os.path.basename(name)
            or name in (".", "..")
            or "\0" in name
        ):
            raise CheckpointError(
                f"{index}: tensor {key}: file {name!r} is not a plain file name in the directory"
            )
    return weight_map


class SafetensorsReader:
    """All tensors of a checkpoint directory (one file or a sharded index), read lazily."""

    def __init__(self, directory: str | pathlib.Path):
        self.directory = pathlib.Path(directory)
        index = self.directory / INDEX_NAME
        weight_map = _weight_map(index) if index.exists() else None
        if weight_map is not None:
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.directory.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{self.directory}: no *.safetensors files (and no {INDEX_NAME})")
        self._handles = {}
        self._file_of: dict[str, str] = {}
        self.metadata: dict[str, str] = {}
        for name in files:
            path = self.directory / name
            if not path.is_file():
                raise CheckpointError(f"{index}: lists {name}, which does not exist")
            handle = self._handles[name] = _open(path)
            self.metadata.update(handle.metadata() or {})
            for key in handle.keys():
                if key in self._file_of:
                    raise CheckpointError(f"{path}: tensor {key} is also in {self._file_of[key]}")
                self._file_of[key] = name
        for key, name in (weight_map or {}).items():
            if self._file_of.get(key) != name:
                found = self._file_of.get(key, "none of the files it lists")
                raise CheckpointError(f"{index}: lists tensor {key} in {name}, but {found} has it")

    def keys(self) -> list[str]:
        return sorted(self._file_of)

    def __contains__(self, key: str) -> bool:
        return key in self._file_of

    def _slice(self, key: str):
        if key not in self._file_of:
            raise CheckpointError(f"{self.directory}: tensor {key!r} not found")
        return self._handles[self._file_of[key]].get_slice(key)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._slice(key).get_shape())

    def read(self, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """The tensor, or only its slice `index` (slices, one per leading axis): only those bytes
        are read from the file (`get_slice`)."""
        view = self._slice(key)
        try:
            if 0 in view.get_shape():  # the library refuses to slice a zero-size tensor
                whole = self._handles[self._file_of[key]].get_tensor(key)
                return whole if index is None else whole[tuple(index)]
            return view[() if index is None else tuple(index)]
        except (SafetensorError, TypeError, AttributeError, ValueError) as e:
            # e.g. F8_*: safetensors 0.8's numpy reader looks up numpy.float8_e4m3fn (AttributeError)
            raise CheckpointError(
                f"{self.directory / self._file_of[key]}: cannot read tensor {key} "
                f"(dtype {view.get_dtype()}, shape {view.get_shape()}, index {index}): "
                f"{type(e).__name__}: {e}"
            ) from e


def _unwritable(arrays: dict[str, np.ndarray]) -> list[str]:
    """Keys whose dtype safetensors cannot store (its error names the dtype, not the tensor)."""
    bad = set()
    for dtype in {a.dtype for a in arrays.values()}:
        try:
            save({"probe": np.zeros(0, dtype)})
        except (SafetensorError, TypeError, ValueError):
            bad.add(dtype)
    return sorted(k for k, a in arrays.items() if a.dtype in bad)


def file_format(path: str | os.PathLike) -> str | None:
    """The `format` entry of a safetensors file's metadata (what wrote it: a deployed model, a
    sparse model, ...), or None for anything else (not a file, not readable safetensors)."""
    path = pathlib.Path(path)
    if not path.is_file() or path.suffix != ".safetensors":
        return None
    try:
        with safe_open(path, framework="np") as f:
            return (f.metadata() or {}).get("format")
    except (SafetensorError, OSError):
        return None


def write_safetensors(
    path: str | pathlib.Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write one safetensors file with `safetensors.numpy.save_file` (metadata default: format=pt,
    which transformers requires), atomically (a temporary file renamed over `path`)."""
    # save_file writes a strided array's buffer as if it were C-contiguous: wrong data, no error.
    arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}  # keeps 0-d as 0-d
    try:
        # Temporary file + rename: a kill or a full disk mid-write leaves the previous file intact.
        with atomic_path(path) as tmp:
            save_file(arrays, tmp, metadata=dict(metadata or {"format": "pt"}))
    except WriteError as e:
        raise CheckpointError(str(e)) from e
    except (SafetensorError, TypeError, ValueError) as e:
        bad = _unwritable(arrays)
        if not bad:  # every dtype is writable: the file system failed (e.g. disk full)
            raise CheckpointError(f"{path}: write failed ({e}); the previous file is intact") from e
        named = ", ".join(f"{k} ({arrays[k].dtype})" for k in bad[:8])
        raise CheckpointError(f"{path}: cannot write tensor(s) {named}: {e}") from e


def require_finite(arr: np.ndarray, where: str, key: str) -> np.ndarray:
    """`arr` unchanged; CheckpointError naming `where` and tensor `key` if it holds NaN/Inf."""
    finite = np.isfinite(arr)
    if not finite.all():
        raise CheckpointError(
            f"{where}: tensor {key} has {int(arr.size - np.count_nonzero(finite))} NaN/Inf "
            "value(s); expected finite weights"
        )
    return arr


def fill_module(path, f, graphdef, abstract, exact_dtype=lambda var: False):
    """The module `graphdef` with every array of `abstract` (an nnx State of abstract variables)
    read from the open safetensors file `f` under its path joined by '.', strictly: a missing,
    unreadable, mis-shaped or non-finite tensor, a dtype that differs where `exact_dtype(var)`,
    or a tensor nobody expects is a CheckpointError naming the file and the tensor."""
    import jax.numpy as jnp
    from flax import nnx

    present = set(f.keys())
    filled = []
    for p, var in nnx.to_flat_state(abstract):
        key = ".".join(str(x) for x in p)
        if key not in present:
            raise CheckpointError(
                f"{path}: tensor {key} is missing (expected {var.dtype} {tuple(var.shape)})"
            )
        present.discard(key)
        try:
            value = f.get_tensor(key)
        except (SafetensorError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot read tensor {key}: {e}") from e
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointError(
                f"{path}: tensor {key} has shape {tuple(value.shape)}, expected {tuple(var.shape)}"
            )
        if exact_dtype(var) and value.dtype != np.dtype(var.dtype):
            raise CheckpointError(
                f"{path}: tensor {key} has dtype {value.dtype}, expected {np.dtype(var.dtype)}"
            )
        if value.dtype.kind == "f":
            require_finite(value, str(path), key)
        filled.append((p, var.replace(jnp.asarray(value, var.dtype))))
    if present:
        raise CheckpointError(f"{path}: unexpected tensors {sorted(present)[:5]}")
    return nnx.merge(graphdef, nnx.from_flat_state(filled))
