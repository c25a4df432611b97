"""Which held-out samples also occur verbatim in a training stream (same text and same pixels).

Synthetic generators with a small output space (a one-digit number at one of a few dozen sizes, a
single shape in one colour) repeat themselves, so a long run trains on some "held-out" samples.
Reporting accuracy on the unseen subset keeps the claim honest.
"""

from __future__ import annotations

import hashlib

import numpy as np

from andesvl_jax.data.images import load_rgb
from andesvl_jax.data.sample import Sample


def fingerprint(sample: Sample) -> str:
    """Hash of every message (role, content) and every image's RGB pixels and size."""
    h = hashlib.sha1()
    for m in sample.messages:
        h.update(f"{m.role}\x00{m.content}\x00".encode())
    for img in sample.images:
        arr = np.asarray(load_rgb(img))
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def seen_in_training(held_out: list[Sample], train_source, limit: int | None = None) -> list[bool]:
    """For each held-out sample: does an identical sample occur in train_source[:limit]?

    Only training samples of the held-out samples' tasks are generated (`task_of`).
    """
    wanted = {s.meta["task"] for s in held_out}
    n = len(train_source) if limit is None else min(limit, len(train_source))
    train = {fingerprint(train_source[i]) for i in range(n) if train_source.task_of(i) in wanted}
    return [fingerprint(s) in train for s in held_out]
