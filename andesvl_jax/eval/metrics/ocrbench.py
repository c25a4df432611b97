"""OCRBench (VLMEvalKit's `OCRBench_eval`): a reply is right when an answer occurs in it as a
substring; the headline is the count of right replies (out of 1000), summed over 5 groups.

Rule: for Handwritten Mathematical Expression Recognition, answer and reply are stripped, newlines
made spaces, then every space removed, and compared case-sensitively; for every other category
both are lower-cased, stripped and newlines made spaces. Right iff some answer is a substring
of the reply. "Text Recognition" sums the six recognition categories.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from andesvl_jax.data.answers import gold_answers
from andesvl_jax.eval.metrics.base import Metric, Score, mean_score

HME = "Handwritten Mathematical Expression Recognition"
TEXT_RECOGNITION = (
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
)
# Reported group -> its categories.
GROUPS: dict[str, tuple[str, ...]] = {
    "Text Recognition": TEXT_RECOGNITION,
    "Scene Text-centric VQA": ("Scene Text-centric VQA",),
    "Doc-oriented VQA": ("Doc-oriented VQA",),
    "Key Information Extraction": ("Key Information Extraction",),
    HME: (HME,),
}
CATEGORIES = tuple(c for cats in GROUPS.values() for c in cats)


def _normalize(text: str, category: str) -> str:
    text = text.strip().replace("\n", " ")
    return text.replace(" ", "") if category == HME else text.lower()


def score_ocrbench(prediction: str, meta: Mapping[str, Any]) -> Score:
    """1 iff some answer (normalised for the category) is a substring of the normalised reply."""
    category = meta.get("category")
    if category not in CATEGORIES:
        raise ValueError(
            f"metric 'ocrbench': sample {meta.get('index')!r} has category {category!r}; "
            f"expected one of {list(CATEGORIES)}"
        )
    pred = _normalize(prediction, category)
    refs = [_normalize(a, category) for a in gold_answers(meta, "metric 'ocrbench'")]
    return {
        "score": float(any(r in pred for r in refs)),
        "category": category,
        "unparsable": not prediction.strip(),
    }


def aggregate_ocrbench(scores: Sequence[Score]) -> dict[str, Any]:
    """`final_score` (right replies, the official headline out of 1000), `final_score_norm`
    (final_score / 10, the official 0-100 figure for the full 1000-question set), `groups` (right
    replies per reported group), `categories` (per category), and `score` (mean: the fraction
    right, = final_score_norm / 100 on the full set)."""
    right: dict[str, int] = collections.Counter()
    for s in scores:
        right[s["category"]] += int(s["score"])
    groups = {g: sum(right[c] for c in cats) for g, cats in GROUPS.items()}
    final = sum(groups.values())
    return {
        **mean_score(scores),
        "final_score": final,
        "final_score_norm": final / 10,
        "groups": groups,
        "categories": {c: right[c] for c in CATEGORIES if c in right},
    }


OCRBENCH = Metric("ocrbench", score_ocrbench, aggregate_ocrbench)
