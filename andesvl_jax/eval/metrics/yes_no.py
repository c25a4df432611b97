"""Yes/no questions (MME, HallusionBench) and POPE's confusion-matrix aggregate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from andesvl_jax.eval.metrics.base import Metric, Score, mean_score
from andesvl_jax.eval.metrics.vqa import vqa_punctuation


def extract_yes_no(prediction: str) -> str | None:
    """'yes' or 'no' if exactly one of the two words occurs (VLMEvalKit rule), else None."""
    words = set(vqa_punctuation(prediction.lower()).split())
    if ("yes" in words) != ("no" in words):
        return "yes" if "yes" in words else "no"
    return None


def score_yes_no(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Correct iff the extracted yes/no equals meta['answer'] (case-insensitive)."""
    if meta.get("answer") is None:
        raise KeyError(f"metric 'yes_no' needs sample meta 'answer'; got keys {sorted(meta)}")
    answer = str(meta["answer"]).strip().lower()
    pred = extract_yes_no(prediction)
    return {"score": float(pred == answer), "pred": pred, "answer": answer, "unparsable": not pred}


def aggregate_pope(scores: Sequence[Score]) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 ('yes' is positive) and yes-ratio over a yes/no set.

    An unparsable prediction is wrong for accuracy, a miss for recall (when the truth is yes), and
    neither a yes nor a no for precision and yes-ratio.
    """
    out = mean_score(scores)
    tp = sum(s["pred"] == "yes" and s["answer"] == "yes" for s in scores)
    fp = sum(s["pred"] == "yes" and s["answer"] != "yes" for s in scores)
    positives = sum(s["answer"] == "yes" for s in scores)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    yes_ratio = (tp + fp) / len(scores) if scores else 0.0
    return {
        **out,
        "accuracy": out["score"],
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": yes_ratio,
        "tp": tp,
        "fp": fp,
        "fn": positives - tp,
        "tn": sum(s["pred"] == "no" and s["answer"] == "no" for s in scores),
    }


YES_NO = Metric("yes_no", score_yes_no)
POPE = Metric("pope", score_yes_no, aggregate_pope)
