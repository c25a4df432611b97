"""Registry of benchmark readers: name -> reader(path, **kw) -> BenchmarkSet of Samples.

Each Sample is a user turn (images as IMAGE_TAGs, then the prompt) and an assistant turn holding the
reference answer; `sample.prompt` is what a generator is given. `sample.meta` holds what the metric
needs: 'benchmark', 'index', 'task', 'metric' (a key of eval.metrics.METRICS) and, by task,
'answer'/'answers', 'options', 'category', 'box' (0-1000). See docs/evaluation.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from andesvl_jax.eval.readers.andesui import UI_TASKS, read_andesui
from andesvl_jax.eval.readers.base import BenchmarkSet
from andesvl_jax.eval.readers.screenspot import read_screenspot
from andesvl_jax.eval.readers.vlmeval_tsv import BENCHMARKS, TASKS, read_vlmeval_tsv

READERS: dict[str, Callable[..., BenchmarkSet]] = {
    "vlmeval_tsv": read_vlmeval_tsv,
    "andesui": read_andesui,
    "screenspot": read_screenspot,
}


def read_benchmark(fmt: str, path: str | os.PathLike, **kw) -> BenchmarkSet:
    """Read a benchmark file of a registered format (keyword arguments go to the reader)."""
    if fmt not in READERS:
        raise KeyError(f"benchmark format {fmt!r} unknown; expected one of {sorted(READERS)}")
    return READERS[fmt](path, **kw)


__all__ = [
    "BENCHMARKS",
    "READERS",
    "TASKS",
    "UI_TASKS",
    "BenchmarkSet",
    "read_andesui",
    "read_benchmark",
    "read_screenspot",
    "read_vlmeval_tsv",
]
