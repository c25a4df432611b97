"""Grounding (ScreenSpot, AndesUI grounding and QA): the reply's location against the gold box.

The reading and the geometry are data/boxes.py's (`ground`), the same the GRPO rewards
`point_in_box` and `box_iou` use: the first box or point of the reply; `score` is 1 iff its point
(a point, or the box centre) lies in meta['box'], borders included; `iou` is that of its box
(0 for a point). Corners in either order are normalised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.boxes import gold_box, ground
from andesvl_jax.eval.metrics.base import Metric, Score, mean_of


def score_grounding(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Point-in-box hit, IoU and IoU >= 0.5 of the reply's location against meta['box']."""
    result = ground(prediction, gold_box(meta, "metric 'grounding'"))
    location = result.location
    return {
        "score": float(result.hit),
        "iou": result.iou,
        "iou@0.5": result.iou >= 0.5,
        "pred_box": None if location is None else location.box,
        "pred_point": None if location is None else location.point,
        "unparsable": location is None,
    }


GROUNDING = Metric("grounding", score_grounding, mean_of("iou", "iou@0.5"))
