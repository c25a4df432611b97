"""Model-to-model agreement: how often two models' top-1 tokens agree, position by position."""

from __future__ import annotations

from typing import Any

import numpy as np


def _top1(x: np.ndarray) -> np.ndarray:
    # Integer arrays are token ids already; anything else (incl. bfloat16) is logits [..., vocab].
    return x if x.dtype.kind in "iu" else np.asarray(x, np.float32).argmax(-1)


def top1_consistency(a, b, mask=None) -> dict[str, Any]:
    """Fraction of positions where two models' top-1 tokens agree.

    a, b: logits [..., vocab] (float) or token ids [...] (int), in any mix; mask: [...] bool,
    True where a position counts (default: all). Returns agreement, agreeing and positions.
    """
    ta, tb = _top1(np.asarray(a)), _top1(np.asarray(b))
    if ta.shape != tb.shape:
        raise ValueError(f"top-1 token shapes differ: {ta.shape} vs {tb.shape}")
    keep = np.ones(ta.shape, bool) if mask is None else np.asarray(mask, bool)
    if keep.shape != ta.shape:
        raise ValueError(f"mask shape {keep.shape} does not match token shape {ta.shape}")
    positions = int(keep.sum())
    if positions == 0:
        raise ValueError("mask selects no positions to compare")
    agreeing = int(((ta == tb) & keep).sum())
    return {"agreement": agreeing / positions, "agreeing": agreeing, "positions": positions}
