"""Multiple choice (MMBench, AI2D, ...): the option letter a reply picks, against the answer."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import squash
from andesvl_jax.eval.metrics.base import Metric, Score

LETTERS = "ABCDEFGHIJ"
_ANSWER_IS = re.compile(
    r"(?i:answer)\s*(?i:is)?\s*[:：]?\s*(?i:option)?\s*[\(\[]?([A-J])(?![A-Za-z])"
)
_LEADING_LETTER = re.compile(r"[\(\[]?([A-J])(?:[\)\].:]\s|[\)\]]$)")
_LETTER_TOKEN_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})


def _option_text(text: str) -> str:
    return squash(text).strip(" .。")


def _choice_from_text(text: str, options: Mapping[str, str]) -> str | None:
    pred = _option_text(text)
    exact = [k for k, v in options.items() if _option_text(v) == pred]
    if len(exact) == 1:
        return exact[0]
    found = [k for k, v in options.items() if _option_text(v) and _option_text(v) in pred]
    # "cat food" contains both options "cat" and "cat food": the one containing all others wins.
    for k in found:
        if all(_option_text(options[o]) in _option_text(options[k]) for o in found):
            return k
    return None


def extract_choice(prediction: str, options: Mapping[str, str] | None = None) -> str | None:
    """The option letter a reply picks ("B", "(B)", "B.", "Answer: B", option text) or None."""
    letters = sorted(options) if options else list(LETTERS)
    text = prediction.strip()
    if not text:
        return None
    bare = text.strip(" .:()[]*")
    if len(bare) == 1 and bare in letters:
        return bare
    explicit = [m for m in _ANSWER_IS.findall(text) if m in letters]
    if explicit:
        return explicit[-1]
    lead = _LEADING_LETTER.match(text)
    if lead and lead.group(1) in letters:
        return lead.group(1)
    tokens = text.translate(_LETTER_TOKEN_SEPARATORS).split()
    found = {t for t in tokens if t in letters}
    # A lone "A" in a sentence is usually the article, not an option (VLMEvalKit does the same).
    if len(found) == 1 and not (found == {"A"} and len(tokens) > 3):
        return found.pop()
    return _choice_from_text(text, options) if options else None


def score_multiple_choice(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Correct iff the extracted letter equals meta['answer'] (a letter, or an option's text)."""
    if meta.get("answer") is None:
        raise KeyError(f"metric 'multiple_choice' needs sample meta 'answer'; got {sorted(meta)}")
    options = meta.get("options") or {}
    answer = str(meta["answer"]).strip()
    if not (len(answer) == 1 and answer.upper() in LETTERS):
        answer = _choice_from_text(answer, options) or answer
    pred = extract_choice(prediction, options)
    correct = pred is not None and pred == answer.upper()
    return {"score": float(correct), "pred": pred, "answer": answer, "unparsable": pred is None}


MULTIPLE_CHOICE = Metric("multiple_choice", score_multiple_choice)
