"""Exact-match evaluation of short-answer tasks (held-out synthetic questions) by greedy decoding."""

from __future__ import annotations

import collections

from andesvl_jax.data.sample import Sample
from andesvl_jax.infer.engine import Engine


def evaluate_exact_match(engine: Engine, samples: list[Sample], max_new_tokens: int = 8) -> dict:
    """Accuracy per task (sample.meta['task']) and overall; answers compared after strip()."""
    hits, totals, examples, correct = collections.Counter(), collections.Counter(), [], []
    completions = engine.generate(samples, max_new_tokens=max_new_tokens)
    for sample, done in zip(samples, completions, strict=True):
        task, answer = sample.meta.get("task", "all"), str(sample.meta["answer"]).strip()
        totals[task] += 1
        correct.append(done.answer == answer)
        hits[task] += int(correct[-1])
        if len(examples) < 8:
            examples.append({"task": task, "answer": answer, "prediction": done.answer})
    return {
        "accuracy": sum(hits.values()) / max(1, sum(totals.values())),
        "per_task": {t: hits[t] / totals[t] for t in sorted(totals)},
        "counts": dict(totals),
        "examples": examples,
        "correct": correct,
    }
