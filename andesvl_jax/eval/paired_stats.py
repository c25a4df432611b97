"""Paired statistics for the ablation study: intervals, tests and detectable effects.

Data are 0/1 correctness matrices `[seeds, questions]`: every seed of every cell answers the same
held-out questions, and seed s of two cells trains on the same batches, so two cells are compared
pair by pair — the same seed, the same question.

- `bootstrap_mean(x)` / `paired_bootstrap(a, b)`: a two-way bootstrap (seeds and questions
  resampled independently, with replacement) of the mean of x, or of the mean of a - b; the 95 %
  percentile interval. Resampling both axes carries both sources of variance into the interval.
- `mcnemar(a, b)`: the exact McNemar test on the discordant pairs (pooled over seeds and
  questions), with the Wald interval of the paired difference.
- `variance_components(d)`: two-way random-effects ANOVA of a difference matrix d = a - b
  (seed, question and residual variance), and `mde(...)` the minimal detectable effect of a
  design with S seeds and Q questions: (z_{1-alpha/2} + z_{power}) * sqrt(var_s/S + var_q/Q +
  var_e/(S*Q)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats


def _matrix(x: Any, name: str) -> np.ndarray:
    m = np.asarray(x, dtype=np.float64)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{name}: expected a non-empty [seeds, questions] matrix, got {m.shape}")
    return m


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired data must have one shape; got a {a.shape} and b {b.shape}")
    return a, b


def bootstrap_mean(
    x: Any, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Mean of x [seeds, questions] with a two-way percentile bootstrap interval."""
    x = _matrix(x, "x")
    n_seeds, n_q = x.shape
    rng = np.random.default_rng(seed)
    w_seed = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)
    w_q = rng.multinomial(n_q, np.full(n_q, 1.0 / n_q), size=n_boot)
    boot = np.einsum("bs,sq,bq->b", w_seed, x, w_q) / (n_seeds * n_q)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return {
        "mean": float(x.mean()),
        "ci": (float(lo), float(hi)),
        "se": float(boot.std(ddof=1)),
        "seeds": n_seeds,
        "questions": n_q,
    }


def paired_bootstrap(
    a: Any, b: Any, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Mean of a - b (same seeds, same questions) with a two-way percentile bootstrap interval."""
    a, b = _pair(a, b)
    return bootstrap_mean(a - b, n_boot, level, seed)


def mcnemar(a: Any, b: Any, level: float = 0.95) -> dict[str, Any]:
    """Exact McNemar test of paired 0/1 outcomes (all seed x question pairs pooled).

    `a_only`/`b_only`: pairs right only under a / only under b; `p`: the two-sided exact binomial
    p-value of a_only among the discordant pairs (1 when there are none); `diff` = mean(a) -
    mean(b) with its Wald interval (the variance of a paired difference of proportions).
    """
    a, b = _pair(a, b)
    a, b = a.ravel() > 0.5, b.ravel() > 0.5
    n = a.size
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    p = stats.binomtest(a_only, discordant, 0.5).pvalue if discordant else 1.0
    diff = (a_only - b_only) / n
    se = math.sqrt(max(discordant - (a_only - b_only) ** 2 / n, 0.0)) / n
    z = stats.norm.ppf(0.5 + level / 2)
    return {
        "a_only": a_only,
        "b_only": b_only,
        "n": n,
        "p": float(p),
        "diff": diff,
        "ci": (diff - z * se, diff + z * se),
    }


def variance_components(d: Any) -> dict[str, Any]:
    """Two-way random-effects ANOVA (one observation per cell) of d [seeds, questions].

    Mean squares: MS_seed = Q * sum((row mean - grand)^2) / (S - 1), MS_q = S * sum((column mean -
    grand)^2) / (Q - 1), MS_e the interaction/residual; var_seed = max(0, (MS_seed - MS_e) / Q),
    var_question = max(0, (MS_q - MS_e) / S), var_residual = MS_e. With one seed the seed and
    residual terms cannot be told apart: var_seed is None and var_question is the column variance.
    """
    d = _matrix(d, "d")
    n_seeds, n_q = d.shape
    if n_q < 2:
        raise ValueError(f"variance_components needs >= 2 questions; got {n_q}")
    grand = d.mean()
    if n_seeds == 1:
        return {"var_seed": None, "var_question": float(d.var(ddof=1)), "var_residual": 0.0}
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    ms_seed = n_q * np.sum((rows - grand) ** 2) / (n_seeds - 1)
    ms_q = n_seeds * np.sum((cols - grand) ** 2) / (n_q - 1)
    resid = d - rows[:, None] - cols[None, :] + grand
    ms_e = np.sum(resid**2) / ((n_seeds - 1) * (n_q - 1))
    return {
        "var_seed": float(max(0.0, (ms_seed - ms_e) / n_q)),
        "var_question": float(max(0.0, (ms_q - ms_e) / n_seeds)),
        "var_residual": float(ms_e),
    }


def mde(
    components: dict[str, Any], seeds: int, questions: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Minimal detectable effect (same units as d) of a two-sided test at `alpha` with `power`,
    for a design of `seeds` x `questions` with these variance components."""
    var = (
        (components["var_seed"] or 0.0) / seeds
        + components["var_question"] / questions
        + components["var_residual"] / (seeds * questions)
    )
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * math.sqrt(var))
