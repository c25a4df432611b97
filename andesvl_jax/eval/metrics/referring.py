"""AndesUI referring (box -> description): correct iff the description shares a substring."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import gold_answers
from andesvl_jax.eval.metrics.base import Metric, Score
from andesvl_jax.eval.metrics.strings import longest_common_substring

_SPECIAL_TOKEN = re.compile(r"<\|[^|]*\|>")


def normalize_referring(text: str) -> str:
    """Lower case, and drop whitespace, punctuation, symbols and special tokens like <|box_end|>."""
    text = _SPECIAL_TOKEN.sub("", text.lower())
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c)[0] not in "PS")


def score_referring(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Correct iff prediction and a reference share a non-empty substring (after normalising)."""
    pred = normalize_referring(prediction)
    refs = gold_answers(meta, "metric 'andesui_referring'")
    best = max((longest_common_substring(pred, normalize_referring(r)) for r in refs), key=len)
    return {"score": float(bool(best)), "lcs": best, "unparsable": not pred}


ANDESUI_REFERRING = Metric("andesui_referring", score_referring)
