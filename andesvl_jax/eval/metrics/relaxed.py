"""ChartQA relaxed accuracy, exactly as the reference (pix2struct's `relaxed_correctness`, which
VLMEvalKit copies): numbers within 5 % relative error, case-insensitive exact match otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import gold_answers
from andesvl_jax.eval.metrics.base import Metric, Score


def chart_number(text: str) -> float | None:
    """The reference's `_to_float`: Python `float(text)`, or `float(text without trailing %) / 100`
    for a percentage; None otherwise (no thousands commas, currency signs or fractions)."""
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_match(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """The stripped prediction and the target both numbers and the target non-zero: relative
    error <= tolerance. Otherwise (a target of 0 included) case-insensitive string equality."""
    prediction = prediction.strip()
    pred, gold = chart_number(prediction), chart_number(target)
    if pred is not None and gold:
        return abs(pred - gold) / abs(gold) <= tolerance
    return prediction.lower() == target.lower()


def score_relaxed_accuracy(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Correct against any ground truth; unparsable if a number was expected and none given."""
    refs = gold_answers(meta, "metric 'relaxed_accuracy'")
    hit = any(relaxed_match(prediction, r) for r in refs)
    # A number was expected but the prediction is not a number at all: unreadable, not just wrong.
    numeric_expected = any(chart_number(r) is not None for r in refs)
    text = prediction.strip()
    unparsable = not text or (numeric_expected and chart_number(text) is None)
    return {"score": float(hit), "unparsable": unparsable and not hit}


RELAXED_ACCURACY = Metric("relaxed_accuracy", score_relaxed_accuracy)
