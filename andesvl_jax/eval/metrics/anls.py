"""ANLS (DocVQA, InfoVQA): Average Normalised Levenshtein Similarity, threshold 0.5."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import gold_answers, squash
from andesvl_jax.eval.metrics.base import Metric, Score
from andesvl_jax.eval.metrics.strings import levenshtein


def score_anls(prediction: str, meta: Mapping[str, Any], threshold: float = 0.5) -> Score:
    """Max over ground truths of 1 - NL if NL < threshold else 0 (NL: edit distance of the
    `squash`ed, i.e. lower-cased and whitespace-collapsed, strings over the longer one's length —
    measured after `.upper()`, as the `anls` package and VLMEvalKit do, so 'ß' counts 2)."""
    pred = squash(prediction)
    best = 0.0
    for ref in map(squash, gold_answers(meta, "metric 'anls'")):
        longest = max(len(pred.upper()), len(ref.upper()))
        nl = levenshtein(pred, ref) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return {"score": best, "unparsable": not pred}


ANLS = Metric("anls", score_anls)
