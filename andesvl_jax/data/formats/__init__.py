"""Registry of dataset formats.

name -> opener(path, image_root=None, **kw) -> random-access source of Samples.
"""

from __future__ import annotations

from collections.abc import Callable

from andesvl_jax.data.formats.arrayrecord import ArrayRecordSource, write_arrayrecord
from andesvl_jax.data.formats.jsonl import (
    JsonlSource,
    interleaved_to_sample,
    llava_to_sample,
    preference_to_sample,
    rl_to_sample,
)
from andesvl_jax.data.formats.tfds_source import TfdsSource


def _jsonl(to_sample):
    return lambda path, image_root=None, **kw: JsonlSource(path, to_sample, image_root)


def _tfds(path, image_root=None, **kw):
    # PATH is "name[:split]" (optionally name/config); data_dir via --data-dir.
    name, _, split = str(path).partition(":")
    return TfdsSource(name, split or "train", **kw)


FORMATS: dict[str, Callable[..., object]] = {
    "llava": _jsonl(llava_to_sample),
    "interleaved": _jsonl(interleaved_to_sample),
    "preference": _jsonl(preference_to_sample),
    "rl": _jsonl(rl_to_sample),
    "arrayrecord": lambda path, image_root=None, **kw: ArrayRecordSource(path),
    "tfds": _tfds,
}


def open_dataset(fmt: str, path, image_root=None, **kw):
    """Open a dataset of a registered format as a random-access source of Samples."""
    if fmt not in FORMATS:
        raise KeyError(f"dataset format {fmt!r} unknown; expected one of {sorted(FORMATS)}")
    return FORMATS[fmt](path, image_root=image_root, **kw)


__all__ = [
    "FORMATS",
    "ArrayRecordSource",
    "JsonlSource",
    "TfdsSource",
    "open_dataset",
    "write_arrayrecord",
]
