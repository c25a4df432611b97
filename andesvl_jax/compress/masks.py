"""Sparsity patterns and masks on our [K, N] kernels (K = input features, N = outputs).

A pattern is "unstructured" (a fraction of each output column's K weights pruned, the column being
the comparison group as in Wanda) or "n:m" (of every m consecutive K rows of a column, n kept —
"1:4" = 75 %, "2:4" = 50 %, "2:8" = 75 %). `mask_from_scores` keeps the highest scores under the
pattern; masks are bool [K, N] (True = kept).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

NM_PATTERNS = ("1:4", "2:4", "2:8")  # the N:M patterns the packed format stores (sparse_store.py)


@dataclasses.dataclass(frozen=True)
class Pattern:
    """'unstructured' with `sparsity` in [0, 1), or n:m (sparsity = 1 − n/m)."""

    kind: str  # "unstructured" | "nm"
    sparsity: float
    n: int = 0
    m: int = 0

    @property
    def name(self) -> str:
        return f"{self.n}:{self.m}" if self.kind == "nm" else f"u{round(self.sparsity * 100)}"


def parse_pattern(spec: str | float, where: str = "") -> Pattern:
    """'1:4' | '2:4' | '2:8' | a sparsity fraction (0.75) or 'u75' (unstructured percent)."""
    at = f"{where}: " if where else ""
    if isinstance(spec, str) and ":" in spec:
        if spec not in NM_PATTERNS:
            raise ValueError(
                f"{at}sparsity pattern {spec!r} cannot be stored; expected one of {NM_PATTERNS} "
                "or an unstructured fraction"
            )
        n, m = map(int, spec.split(":"))
        return Pattern("nm", 1.0 - n / m, n, m)
    if isinstance(spec, str):
        hit = re.fullmatch(r"u(\d+(\.\d+)?)", spec)
        if not hit:
            raise ValueError(
                f"{at}sparsity {spec!r} unreadable; expected 'n:m', 'uPCT' or a fraction"
            )
        spec = float(hit.group(1)) / 100
    s = float(spec)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"{at}unstructured sparsity {s} must be in [0, 1)")
    return Pattern("unstructured", s)


def mask_from_scores(scores: np.ndarray, pattern: Pattern, where: str = "") -> np.ndarray:
    """bool [K, N]: keep the largest scores per output column (unstructured) or per m-block of K."""
    k, n = scores.shape
    if pattern.kind == "nm":
        if k % pattern.m:
            raise ValueError(
                f"{where}: {pattern.name} needs K ({k}) to be a multiple of {pattern.m}"
            )
        blocks = scores.reshape(k // pattern.m, pattern.m, n)
        order = np.argsort(-blocks, axis=1, kind="stable")[:, : pattern.n]
        mask = np.zeros(blocks.shape, bool)
        np.put_along_axis(mask, order, True, axis=1)
        return mask.reshape(k, n)
    prune = int(round(k * pattern.sparsity))
    order = np.argsort(scores, axis=0, kind="stable")[:prune]
    mask = np.ones((k, n), bool)
    np.put_along_axis(mask, order, False, axis=0)
    return mask


def check_mask(mask: np.ndarray, weight_shape, pattern: Pattern, where: str) -> None:
    """A mask matches its weight's shape and obeys `pattern` (else an error naming `where`)."""
    if tuple(mask.shape) != tuple(weight_shape):
        raise ValueError(
            f"{where}: mask shape {mask.shape} does not match its weight {weight_shape}"
        )
    if pattern.kind == "nm":
        k, n = mask.shape
        per_block = mask.reshape(k // pattern.m, pattern.m, n).sum(1)
        if np.any(per_block != pattern.n):
            raise ValueError(
                f"{where}: mask is not {pattern.name} (some block keeps != {pattern.n})"
            )
