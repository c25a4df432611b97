"""MathVista without an LLM judge: rule-based answer extraction, then MathVista's normalisation.

The official kit (MathVista's `extract_answer`, VLMEvalKit's `MathVista_auxeval`) asks GPT-4 to
extract the answer from the reply whenever its quick rules fail; here the rules are all there is,
so a reply that states its answer in prose may be scored unparsable where the judge would read it.
The rules, in order:

1. Where to look: the last `\\boxed{...}`; else the text after the last `answer is` /
   `answer:` (case-insensitive); else the whole reply.
2. multi_choice: the option letter by the `multiple_choice` rule (a letter, `(B)`, `Answer: B`, or
   an option's text) over the options from `choices`; right iff it is the answer's option.
   (MathVista forces a choice by edit distance when no letter is found; VLMEvalKit's prefetch and
   we do not: no letter is unparsable.)
3. integer: the last number there, `int(float(x))` (MathVista's normalisation) against the answer.
4. float: the last number, rounded to `precision` decimals (the TSV column; default: the answer's
   own decimals), against the answer rounded alike.
5. list: the last `[...]` there, read as a Python list, equal to the answer's list (numbers
   compared as floats).
6. text: the short-answer `exact_match` rule (data/answers.answers_match).

Fields come from the TSV (`meta["fields"]`): `question_type` (`multi_choice` / `free_form`),
`answer_type` (`integer`, `float`, `text`, `list`), `choices` (a list literal), `precision`,
`answer_option` (VLMEvalKit's letter of the answer, else found from `choices`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import answers_match, last_boxed, parse_number
from andesvl_jax.eval.metrics.base import Metric, Score
from andesvl_jax.eval.metrics.choice import LETTERS, extract_choice

_ANSWER_MARKER = re.compile(r"(?i)answer(?:\s+is)?\s*[:：]")
_ANSWER_IS = re.compile(r"(?i)answer\s+is")
_NUMBER = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[+-]?\d*\.?\d+(?:[eE][+-]?\d+)?")
_LIST = re.compile(r"\[[^\[\]]*\]")


def answer_span(reply: str) -> str:
    """Where the answer is read: the last \\boxed{}, else after the last 'answer is'/'answer:'."""
    boxed = last_boxed(reply)
    if boxed is not None:
        return boxed
    marks = [m.end() for r in (_ANSWER_MARKER, _ANSWER_IS) for m in r.finditer(reply)]
    return reply[max(marks) :] if marks else reply


def last_number(text: str) -> float | None:
    """The last number written in text (thousands commas allowed), or None."""
    found = _NUMBER.findall(text)
    return parse_number(found[-1].rstrip(".")) if found else None


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _as_list(text: str) -> list | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, list | tuple):
        return None
    return [float(v) if isinstance(v, int | float) else str(v).strip().lower() for v in value]


def _fields(meta: Mapping[str, Any]) -> dict[str, str]:
    fields = dict(meta.get("fields") or {})
    for key in ("question_type", "answer_type"):
        if key not in fields:
            raise KeyError(
                f"metric 'mathvista': sample {meta.get('index')!r} lacks column {key!r}; "
                f"fields found: {sorted(fields)}"
            )
    return fields


def _multi_choice(span: str, reply: str, fields: dict, answer: str) -> tuple[Any, bool]:
    choices = [str(c) for c in ast.literal_eval(fields["choices"])]
    options = dict(zip(LETTERS, choices, strict=False))
    gold = fields.get("answer_option") or next(
        (k for k, v in options.items() if v.strip() == answer.strip()), None
    )
    pred = extract_choice(span, options) or extract_choice(reply, options)
    return pred, pred is not None and pred == gold


def _numeric(span: str, answer_type: str, fields: dict, answer: str) -> tuple[Any, bool]:
    pred, gold = last_number(span), parse_number(answer)
    if pred is None or gold is None:
        return pred, False
    if answer_type == "integer":
        return int(pred), int(pred) == int(gold)
    precision = int(float(fields["precision"])) if fields.get("precision") else _decimals(answer)
    return round(pred, precision), round(pred, precision) == round(gold, precision)


def score_mathvista(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Extract by the rules above and compare with meta['answer']."""
    fields = _fields(meta)
    answer = str(meta.get("answer", ""))
    span = answer_span(prediction)
    answer_type = fields["answer_type"]
    if fields["question_type"] == "multi_choice":
        pred, right = _multi_choice(span, prediction, fields, answer)
    elif answer_type in ("integer", "float"):
        pred, right = _numeric(span, answer_type, fields, answer)
    elif answer_type == "list":
        lists = _LIST.findall(span)
        pred = _as_list(lists[-1]) if lists else None
        right = pred is not None and pred == _as_list(answer)
    else:
        pred = span.strip() or None
        right = pred is not None and answers_match(pred, answer)
    return {"score": float(right), "pred": pred, "unparsable": pred is None}


MATHVISTA = Metric("mathvista", score_mathvista)
