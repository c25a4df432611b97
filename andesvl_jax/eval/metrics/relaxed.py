"""ChartQA relaxed accuracy: numbers within 5 % relative error, exact match otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import gold_answers, normalize_answer, parse_number
from andesvl_jax.eval.metrics.base import Metric, Score


def chart_number(text: str) -> list[float] | None:
    """Candidate values of a number-only answer ('1,234', '45%', '$3.5', '1/2'); None if not a
    number. A percentage may mean either value (45 or 0.45), as charts label both ways."""
    t = text.strip().rstrip(".").replace("$", "").strip()
    percent = t.endswith("%")
    value = parse_number(t.rstrip("%"))
    if value is None:
        return None
    return [value, value / 100.0] if percent else [value]


def relaxed_match(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """Numbers within `tolerance` relative error (a target of 0 needs exactly 0), else the
    normalised exact match of data/answers.normalize_answer."""
    pred_vals, target_vals = chart_number(prediction), chart_number(target)
    if pred_vals is None or target_vals is None:
        return normalize_answer(prediction) == normalize_answer(target)
    return any(
        abs(p - t) <= tolerance * abs(t) if t else p == t for p in pred_vals for t in target_vals
    )


def score_relaxed_accuracy(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Correct against any ground truth; unparsable if a number was expected and none given."""
    refs = gold_answers(meta, "metric 'relaxed_accuracy'")
    hit = any(relaxed_match(prediction, r) for r in refs)
    # A number was expected but the prediction is not a number at all: unreadable, not just wrong.
    numeric_expected = any(chart_number(r) is not None for r in refs)
    unparsable = not prediction.strip() or (numeric_expected and chart_number(prediction) is None)
    return {"score": float(hit), "unparsable": unparsable and not hit}


RELAXED_ACCURACY = Metric("relaxed_accuracy", score_relaxed_accuracy)
