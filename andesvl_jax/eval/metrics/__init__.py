"""Benchmark metrics: pure-Python scorers behind one registry, METRICS (name -> Metric).

One module per family: vqa (VQAv2 accuracy), anls, relaxed (ChartQA), rouge, choice (multiple
choice), yes_no (and POPE), grounding, referring (AndesUI), exact_match (short answers, and the
engine loop of the demo and ablations); strings holds the string distances, agreement the top-1
consistency of two models, base the Metric and its aggregators, registry METRICS.

A Metric scores one prediction against the answer facts a reader put in `Sample.meta`
(`metric(prediction, meta) -> dict`, the final answer only: data/answers.strip_thinking) and
aggregates the per-sample dicts of a set (`metric.aggregate(scores) -> dict`); see base.py.
Answers and boxes are read by data/answers.py and data/boxes.py, the code the GRPO rewards use.
`evaluate_predictions` runs a metric over a set, with a per-category breakdown.
"""

from andesvl_jax.data.answers import strip_thinking
from andesvl_jax.data.boxes import (
    box_center,
    format_box,
    iou,
    parse_box,
    parse_point,
    point_in_box,
)
from andesvl_jax.eval.metrics.agreement import top1_consistency
from andesvl_jax.eval.metrics.anls import score_anls
from andesvl_jax.eval.metrics.base import Metric, Score, mean_of, mean_score
from andesvl_jax.eval.metrics.choice import LETTERS, extract_choice, score_multiple_choice
from andesvl_jax.eval.metrics.exact_match import evaluate_exact_match, score_exact_match
from andesvl_jax.eval.metrics.grounding import score_grounding
from andesvl_jax.eval.metrics.referring import normalize_referring, score_referring
from andesvl_jax.eval.metrics.registry import METRICS, evaluate_predictions, get_metric
from andesvl_jax.eval.metrics.relaxed import chart_number, relaxed_match, score_relaxed_accuracy
from andesvl_jax.eval.metrics.rouge import rouge_1, rouge_l, score_rouge
from andesvl_jax.eval.metrics.strings import lcs_length, levenshtein, longest_common_substring
from andesvl_jax.eval.metrics.vqa import normalize_vqa_answer, score_vqa_accuracy
from andesvl_jax.eval.metrics.yes_no import aggregate_pope, extract_yes_no, score_yes_no

__all__ = [
    "LETTERS",
    "METRICS",
    "Metric",
    "Score",
    "aggregate_pope",
    "box_center",
    "chart_number",
    "evaluate_exact_match",
    "evaluate_predictions",
    "extract_choice",
    "extract_yes_no",
    "format_box",
    "get_metric",
    "iou",
    "lcs_length",
    "levenshtein",
    "longest_common_substring",
    "mean_of",
    "mean_score",
    "normalize_referring",
    "normalize_vqa_answer",
    "parse_box",
    "parse_point",
    "point_in_box",
    "relaxed_match",
    "rouge_1",
    "rouge_l",
    "score_anls",
    "score_exact_match",
    "score_grounding",
    "score_multiple_choice",
    "score_referring",
    "score_relaxed_accuracy",
    "score_rouge",
    "score_vqa_accuracy",
    "score_yes_no",
    "strip_thinking",
    "top1_consistency",
]
