"""MME: per-category accuracy + accuracy+ and the perception / cognition totals (VLMEvalKit's
`MME_rating`).

MME asks two yes/no questions per image. Per category: accuracy = % of questions right,
accuracy+ = % of images with every question right, category score = accuracy + accuracy+ (at
most 200). Perception = the sum over its 10 categories (at most 2000), cognition (VLMEvalKit's
"reasoning") over its 4 (at most 800). The image of a question is `meta["image_group"]` (the
reader's: the `image_path` cell, else the row index a short `image` cell refers to).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from andesvl_jax.eval.metrics.base import Metric, Score, mean_score
from andesvl_jax.eval.metrics.yes_no import score_yes_no

PERCEPTION = (
    "OCR", "artwork", "celebrity", "color", "count", "existence", "landmark", "position",
    "posters", "scene",
)  # fmt: skip
COGNITION = ("code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation")


def score_mme(prediction: str, meta: Mapping[str, Any]) -> Score:
    """The yes/no score, carrying the question's category and image for the aggregate."""
    missing = [k for k in ("category", "image_group") if meta.get(k) is None]
    if missing:
        raise KeyError(f"metric 'mme' needs sample meta {missing}; got keys {sorted(meta)}")
    out = score_yes_no(prediction, meta)
    return {**out, "category": str(meta["category"]), "image_group": str(meta["image_group"])}


def category_scores(scores: Sequence[Score]) -> dict[str, dict[str, float]]:
    """Per category: acc, acc_plus (both in %), score = acc + acc_plus, images, questions, and
    not_pairs (images without exactly 2 questions; the official code assumes pairs)."""
    by_image: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for s in scores:
        by_image[s["category"]][s["image_group"]].append(s["score"])
    out = {}
    for category, images in sorted(by_image.items()):
        answers = [x for v in images.values() for x in v]
        acc = 100.0 * sum(answers) / len(answers)
        acc_plus = 100.0 * sum(all(v) for v in images.values()) / len(images)
        out[category] = {
            "acc": acc,
            "acc_plus": acc_plus,
            "score": acc + acc_plus,
            "images": len(images),
            "questions": len(answers),
            "not_pairs": sum(len(v) != 2 for v in images.values()),
        }
    return out


def aggregate_mme(scores: Sequence[Score]) -> dict[str, Any]:
    """`perception`, `cognition` (sums of category scores present), `categories`, and
    `missing_categories` (of the 14, so a partial total is never mistaken for the official one).
    `score` is the sum over every category present (perception + cognition on the full set);
    `accuracy` the plain mean over questions; `not_pairs` counts images without exactly 2
    questions."""
    cats = category_scores(scores)
    return {
        **mean_score(scores),
        "accuracy": mean_score(scores)["score"],
        "score": sum(c["score"] for c in cats.values()),
        "perception": sum(cats[c]["score"] for c in PERCEPTION if c in cats),
        "cognition": sum(cats[c]["score"] for c in COGNITION if c in cats),
        "categories": cats,
        "missing_categories": [c for c in PERCEPTION + COGNITION if c not in cats],
        "not_pairs": sum(c["not_pairs"] for c in cats.values()),
    }


MME = Metric("mme", score_mme, aggregate_mme)
