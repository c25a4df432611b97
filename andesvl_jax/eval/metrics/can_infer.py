"""VLMEvalKit's exact-matching option extraction, `can_infer` (vlmeval/utils/matching_util.py),
re-implemented rule for rule: what its MCQ scoring reads from a reply before (or, without a judge,
instead of) asking an LLM. MMBench's circular evaluation uses it (metrics/circular.py).

`can_infer_option`: a refusal phrase -> "Z"; the reply with `.()[],:;!*#{}` made spaces, split on
whitespace; if exactly one option letter occurs as a token and its first occurrence is among the
last 5 tokens -> that letter; no option letter but a `Z` token -> "Z"; else an `answer is X` /
`correct answer is **X**` phrase (X in A-D and an option). `can_infer_text` (when that found
nothing): unless the reply is longer than twice the options' total length, the one option whose
lower-cased text occurs in the lower-cased reply. None when neither reads an answer. (The
lone-"A"-as-article check runs only under VLMEvalKit's VERBOSE setting, so not here.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def can_infer_option(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option letter (or "Z") by VLMEvalKit's `can_infer_option`; None if none."""
    if "Failed to obtain answer via API" in answer:
        return None
    if any(r in answer for r in _REFUSALS):
        return "Z"
    splits = answer.translate(_SEPARATORS).split()
    present = [c for c in choices if c in splits]
    if len(present) == 1:
        ch = present[0]
        if splits.index(ch) > len(splits) - 5:
            return ch
    elif not present and "Z" in splits:
        return "Z"
    match = _VERBOSE_ANSWER.search(answer)
    if match and match.group(1).upper() in choices:
        return match.group(1).upper()
    return None


def can_infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """The one option whose text the reply contains (VLMEvalKit's `can_infer_text`); None if
    none or several, or if the reply is longer than twice the options' total length."""
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    found = [k for k, v in choices.items() if str(v).lower() in answer]
    return found[0] if len(found) == 1 else None


def can_infer(answer: str, choices: Mapping[str, str]) -> str | None:
    """`can_infer_option`, else `can_infer_text`."""
    answer = str(answer)
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)
