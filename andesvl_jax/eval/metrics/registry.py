"""The metric registry, METRICS (name -> Metric), and scoring of a whole prediction set."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from andesvl_jax.eval.metrics.anls import ANLS
from andesvl_jax.eval.metrics.base import Metric, Score
from andesvl_jax.eval.metrics.choice import MULTIPLE_CHOICE
from andesvl_jax.eval.metrics.circular import MMBENCH_CIRCULAR
from andesvl_jax.eval.metrics.exact_match import EXACT_MATCH
from andesvl_jax.eval.metrics.grounding import GROUNDING
from andesvl_jax.eval.metrics.mathvista import MATHVISTA
from andesvl_jax.eval.metrics.mme import MME
from andesvl_jax.eval.metrics.ocrbench import OCRBENCH
from andesvl_jax.eval.metrics.referring import ANDESUI_REFERRING
from andesvl_jax.eval.metrics.relaxed import RELAXED_ACCURACY
from andesvl_jax.eval.metrics.rouge import ROUGE
from andesvl_jax.eval.metrics.vqa import VQA_ACCURACY
from andesvl_jax.eval.metrics.yes_no import POPE, YES_NO

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        VQA_ACCURACY,
        ANLS,
        RELAXED_ACCURACY,
        MULTIPLE_CHOICE,
        YES_NO,
        POPE,
        ROUGE,
        GROUNDING,
        ANDESUI_REFERRING,
        EXACT_MATCH,
        MME,
        MMBENCH_CIRCULAR,
        OCRBENCH,
        MATHVISTA,
    ]
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(f"metric {name!r} unknown; expected one of {sorted(METRICS)}")
    return METRICS[name]


def evaluate_predictions(
    metric: str, predictions: Sequence[str], metas: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Score every prediction; {'overall': aggregate, 'per_category': {...}, 'samples': [...]}.

    Categories come from meta['category'] where present.
    """
    if len(predictions) != len(metas):
        raise ValueError(f"{len(predictions)} predictions for {len(metas)} samples")
    m = get_metric(metric)
    scores = [m(p, meta) for p, meta in zip(predictions, metas, strict=True)]
    groups: dict[str, list[Score]] = collections.defaultdict(list)
    for s, meta in zip(scores, metas, strict=True):
        if meta.get("category") is not None:
            groups[str(meta["category"])].append(s)
    return {
        "metric": metric,
        "overall": m.aggregate(scores),
        "per_category": {c: m.aggregate(g) for c, g in sorted(groups.items())},
        "samples": scores,
    }
