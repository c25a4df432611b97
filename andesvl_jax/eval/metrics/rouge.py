"""ROUGE-1 and ROUGE-L F-measures (max over references) for free-form answers."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import gold_answers
from andesvl_jax.eval.metrics.base import Metric, Score, mean_of
from andesvl_jax.eval.metrics.strings import lcs_length


def _f_measure(overlap: float, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_1(prediction: str, reference: str) -> float:
    """ROUGE-1 F-measure over lower-cased whitespace tokens (clipped unigram overlap)."""
    p, r = prediction.lower().split(), reference.lower().split()
    overlap = sum((collections.Counter(p) & collections.Counter(r)).values())
    return _f_measure(overlap, len(p), len(r))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) from the longest common token subsequence."""
    p, r = prediction.lower().split(), reference.lower().split()
    return _f_measure(lcs_length(p, r), len(p), len(r))


def score_rouge(prediction: str, meta: Mapping[str, Any]) -> Score:
    """ROUGE-1 and ROUGE-L F (max over references); `score` is ROUGE-L."""
    refs = gold_answers(meta, "metric 'rouge'")
    r1 = max(rouge_1(prediction, r) for r in refs)
    rl = max(rouge_l(prediction, r) for r in refs)
    return {"score": rl, "rouge1": r1, "rougeL": rl, "unparsable": not prediction.split()}


ROUGE = Metric("rouge", score_rouge, mean_of("rouge1", "rougeL"))
