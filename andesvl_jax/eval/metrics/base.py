"""What every metric shares: the per-sample Score, the Metric (scorer + aggregator), and the
aggregators of a set's per-sample dicts.

Every per-sample dict has `score` (float, the sample's contribution to the headline number) and
`unparsable` (bool: the prediction could not be read as an answer; it scores 0 and is counted,
never raised). Every aggregate has `score`, `count` and `unparsable`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from andesvl_jax.data.answers import strip_thinking

Score = dict[str, Any]
Aggregate = Callable[[Sequence[Score]], dict[str, Any]]


def mean_score(scores: Sequence[Score]) -> dict[str, Any]:
    """The default aggregate: mean `score`, `count` and the number of unparsable predictions."""
    n = len(scores)
    return {
        "score": sum(s["score"] for s in scores) / n if n else 0.0,
        "count": n,
        "unparsable": sum(bool(s["unparsable"]) for s in scores),
    }


def mean_of(*keys: str) -> Aggregate:
    """`mean_score` plus the mean of each per-sample value under `keys`."""

    def aggregate(scores: Sequence[Score]) -> dict[str, Any]:
        out = mean_score(scores)
        for k in keys:
            out[k] = sum(float(s[k]) for s in scores) / len(scores) if scores else 0.0
        return out

    return aggregate


@dataclasses.dataclass(frozen=True)
class Metric:
    """A per-sample scorer and the aggregator of its per-sample dicts.

    Called on a raw reply, it scores the final answer only: the text after the last `</think>`,
    end-of-turn markers removed (data/answers.strip_thinking, as the GRPO rewards read it).
    """

    name: str
    score: Callable[[str, Mapping[str, Any]], Score]
    aggregate: Aggregate = mean_score

    def __call__(self, prediction: str, meta: Mapping[str, Any]) -> Score:
        return self.score(strip_thinking(str(prediction))[1], meta)
