"""Recording a quantized linear's inputs during calibration forwards (eager, jitted or scanned).

`QuantLinear` in observing mode calls `record(names, x)`, a `jax.debug.callback` with ordered
effects, so it reaches the host in program order even from inside `lax.scan` over stacked layers:
the i-th call for a stacked module within one forward is layer i (`names[i]`).
"""

from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from collections.abc import Callable, Iterator

import jax
import numpy as np


class Recorder:
    """Per-layer lists of recorded input arrays [M, K] (float32 numpy), optionally only `wanted`."""

    def __init__(self, wanted: set[str] | None = None, reduce: Callable | None = None):
        self.wanted, self.reduce = wanted, reduce
        self.data: dict[str, list] = defaultdict(list)
        self.counts: dict[tuple[str, ...], int] = defaultdict(int)

    def add(self, names: tuple[str, ...], x) -> None:
        name = names[self.counts[names] % len(names)]
        self.counts[names] += 1
        if self.wanted is None or name in self.wanted:
            x = np.asarray(x, np.float32)
            self.data[name].append(x if self.reduce is None else self.reduce(x))


_ACTIVE: list[Recorder] = []


def _add(names, x):
    if not _ACTIVE:
        raise RuntimeError(
            f"{names[0]}: a QuantLinear is observing but no recording is active "
            "(run calibration forwards inside compress.recorder.recording())"
        )
    _ACTIVE[-1].add(names, x)


def record(names: tuple[str, ...], x: jax.Array) -> None:
    """Send x [M, K] to the active Recorder, attributed to the next layer of `names`."""
    jax.debug.callback(functools.partial(_add, names), x, ordered=True)


@contextlib.contextmanager
def recording(wanted: set[str] | None = None, reduce: Callable | None = None) -> Iterator[Recorder]:
    """Collect what observing QuantLinears see inside the block."""
    rec = Recorder(wanted, reduce)
    _ACTIVE.append(rec)
    try:
        yield rec
        jax.effects_barrier()
    finally:
        _ACTIVE.remove(rec)
