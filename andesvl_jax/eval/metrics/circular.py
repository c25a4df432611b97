"""MMBench circular evaluation (VLMEvalKit's `mcq_circular_eval`): a question counts only when
every rotation of its options is answered correctly.

An MMBench TSV holds each question once per rotation of its options; the copies share
`g_index = index % 1_000_000` (or a `g_index` column), the original has `index == g_index`.
Per rotation the reply is read as VLMEvalKit reads it before asking a judge (`can_infer`,
metrics/can_infer.py); a group scores 1 iff every rotation's letter equals its answer (a reply no
letter can be read from fails the group, as in VLMEvalKit's exact-matching mode, which has no LLM
judge). A TSV without rotations is groups of
one: plain accuracy.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from andesvl_jax.eval.metrics.base import Metric, Score
from andesvl_jax.eval.metrics.can_infer import can_infer

CIRCULAR_STRIDE = 1_000_000


def circular_group(meta: Mapping[str, Any]) -> str:
    """The question a row rotates: `fields['g_index']` if given, else `index % 1e6`."""
    given = (meta.get("fields") or {}).get("g_index")
    if given is not None:
        return str(int(float(given)))
    index = meta.get("index")
    if not isinstance(index, int):
        raise ValueError(
            f"metric 'mmbench_circular' needs an integer meta 'index' (or a g_index column); "
            f"got {index!r}"
        )
    return str(index % CIRCULAR_STRIDE)


def score_circular(prediction: str, meta: Mapping[str, Any]) -> Score:
    """One rotation: right iff `can_infer` reads meta['answer'] (a letter of meta['options']);
    with its group and whether it is the original."""
    missing = [k for k in ("answer", "options") if not meta.get(k)]
    if missing:
        raise KeyError(f"metric 'mmbench_circular' needs sample meta {missing}; got {sorted(meta)}")
    answer = str(meta["answer"]).strip().upper()
    pred = can_infer(prediction, meta["options"])
    group = circular_group(meta)
    return {
        "score": float(pred == answer),
        "pred": pred,
        "answer": answer,
        "unparsable": pred is None,
        "group": group,
        "original": str(meta.get("index")) == group,
    }


def aggregate_circular(scores: Sequence[Score]) -> dict[str, Any]:
    """`score`: the fraction of questions (groups) with every rotation right; `vanilla`: accuracy
    on the original rotations only; `groups`, `count` (rows) and `unparsable` (rows)."""
    groups: dict[str, list[float]] = collections.defaultdict(list)
    for s in scores:
        groups[s["group"]].append(s["score"])
    originals = [s["score"] for s in scores if s["original"]]
    return {
        "score": sum(all(v) for v in groups.values()) / len(groups) if groups else 0.0,
        "vanilla": sum(originals) / len(originals) if originals else 0.0,
        "groups": len(groups),
        "count": len(scores),
        "unparsable": sum(bool(s["unparsable"]) for s in scores),
    }


MMBENCH_CIRCULAR = Metric("mmbench_circular", score_circular, aggregate_circular)
