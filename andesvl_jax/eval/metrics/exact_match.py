"""Exact match of short answers (held-out synthetic questions, the demo and ablations).

The rule is data/answers.answers_match, the GRPO `exact_answer` reward's: answers equal after
`normalize_answer` (NFKC, case, whitespace, wrapping $...$, a final period).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from andesvl_jax.data.answers import answers_match, gold_answers
from andesvl_jax.data.sample import Sample
from andesvl_jax.eval.metrics.base import Metric, Score

if TYPE_CHECKING:  # only called here: the metrics need not import the model and decoding code
    from andesvl_jax.infer.engine import Engine


def score_exact_match(prediction: str, meta: Mapping[str, Any]) -> Score:
    """1.0 iff the prediction matches any accepted answer (meta 'answers' or 'answer')."""
    golds = gold_answers(meta, "metric 'exact_match'")
    unparsable = not prediction.strip()
    hit = not unparsable and any(answers_match(prediction, g) for g in golds)
    return {"score": float(hit), "unparsable": unparsable}


EXACT_MATCH = Metric("exact_match", score_exact_match)


def evaluate_exact_match(
    engine: Engine, samples: Sequence[Sample], max_new_tokens: int = 8, **generate: Any
) -> dict[str, Any]:
    """Greedy answers scored by exact match: accuracy overall and per task (meta['task']).
    `generate`: passed on to `engine.generate` (e.g. `adapter="count"`, `kv_policy=...`).

    Returns accuracy, per_task, counts, up to 8 examples, and `correct` (one bool per sample).
    """
    hits, totals, examples, correct = collections.Counter(), collections.Counter(), [], []
    completions = engine.generate(list(samples), max_new_tokens=max_new_tokens, **generate)
    for sample, done in zip(samples, completions, strict=True):
        task = sample.meta.get("task", "all")
        totals[task] += 1
        correct.append(EXACT_MATCH(done.answer, sample.meta)["score"] == 1.0)
        hits[task] += int(correct[-1])
        if len(examples) < 8:
            answer = gold_answers(sample.meta, "metric 'exact_match'")[0]
            examples.append({"task": task, "answer": answer, "prediction": done.answer})
    return {
        "accuracy": sum(hits.values()) / max(1, sum(totals.values())),
        "per_task": {t: hits[t] / totals[t] for t in sorted(totals)},
        "counts": dict(totals),
        "examples": examples,
        "correct": correct,
    }
