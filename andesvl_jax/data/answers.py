"""A completion's answer and the answers it is checked against: one definition for metrics
(eval/) and rewards (train/).

Think-stripping (end markers removed, the `<think>reasoning</think>` block split off), the gold
answers of a sample's meta, answer normalisation and exact match, number parsing, and `\\boxed{}`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.chat import THINK_CLOSE, THINK_OPEN

_END_MARKERS = ("<|im_end|>", "<|endoftext|>")


def clean_completion(completion: str) -> str:
    """The completion without trailing end-of-turn markers (<|im_end|>, <|endoftext|>)."""
    text = completion.rstrip()
    while text.endswith(_END_MARKERS):
        for marker in _END_MARKERS:
            text = text.removesuffix(marker).rstrip()
    return text


def strip_thinking(text: str) -> tuple[str | None, str]:
    """Split a completion into (reasoning or None, final answer), both stripped.

    The answer is what follows the last `</think>`; the reasoning is what precedes it (after a
    `<think>`, if any). An opened but unclosed think block (truncated) gives an empty answer.
    """
    text = clean_completion(text)
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        reasoning = text[:close]
        start = reasoning.find(THINK_OPEN)
        if start >= 0:
            reasoning = reasoning[start + len(THINK_OPEN) :]
        return reasoning.strip(), text[close + len(THINK_CLOSE) :].strip()
    start = text.find(THINK_OPEN)
    if start >= 0:
        return text[start + len(THINK_OPEN) :].strip(), ""
    return None, text.strip()


def gold_answers(meta: Mapping[str, Any], who: str) -> list[str]:
    """The accepted answers of a sample: meta['answers'] (a list) or meta['answer'] (one answer or
    a list), as strings. `who` (the metric or reward) is named in the error when neither is set."""
    gold = meta.get("answers", meta.get("answer"))
    if gold is None:
        raise KeyError(f"{who} needs sample meta 'answer' or 'answers'; got keys {sorted(meta)}")
    return [str(g) for g in (gold if isinstance(gold, (list, tuple)) else [gold])]


def squash(text: str) -> str:
    """Lower case, whitespace runs as one space, stripped (ANLS's and DocVQA's normalisation)."""
    return " ".join(text.lower().split())


def normalize_answer(text: str) -> str:
    """Exact-match form: NFKC (full-width = half-width), wrapping $...$ dropped, `squash`ed, a
    final period dropped."""
    text = unicodedata.normalize("NFKC", text).strip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    return squash(text).rstrip(".").strip()


_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FRACTION = re.compile(r"([+-]?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
_SLASH = re.compile(r"([+-]?[\d.]+)/([\d.]+)")


def parse_number(text: str) -> float | None:
    """A number written plainly, with thousands commas, as a/b or as \\frac{a}{b}; else None."""
    s = normalize_answer(text).replace(" ", "")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    try:
        if _PLAIN_NUMBER.fullmatch(s):
            return float(s)
        if m := _FRACTION.fullmatch(s):
            sign = -1.0 if m[1] == "-" else 1.0
            return sign * float(m[2]) / float(m[3])
        if m := _SLASH.fullmatch(s):
            return float(m[1]) / float(m[2])
    except (ValueError, ZeroDivisionError):
        return None
    return None


def answers_match(pred: str, gold: str, numeric: bool = False) -> bool:
    """Exact match of normalised answers; with `numeric`, also equal numbers (1/2 == 0.5)."""
    if normalize_answer(pred) == normalize_answer(gold):
        return True
    if numeric:
        p, g = parse_number(pred), parse_number(gold)
        if p is not None and g is not None:
            return math.isclose(p, g, rel_tol=1e-6, abs_tol=1e-12)
    return False


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} with balanced braces, or None (absent or unbalanced)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    begin = start + len("\\boxed{")
    depth = 1
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip()
    return None
