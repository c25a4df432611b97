"""Rule-based rewards for GRPO: a registry of RewardFn(completion, sample_meta) -> float.

Completions are the decoded response text with special tokens kept (the box tokens are special
tokens); trailing `<|im_end|>` / `<|endoftext|>` markers are ignored. Answer-based rewards read only
the final answer: the text after the last `</think>` (see `strip_thinking`), so a box or \\boxed{}
inside the reasoning never scores. Meta keys: "answer" (str, number, or a list of accepted ones),
"box" ([x1, y1, x2, y2] on the 0-1000 scale), "thinking" (bool, default True).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from andesvl_jax.data.answers import clean_completion, strip_thinking
from andesvl_jax.data.chat import THINK_CLOSE, THINK_OPEN

RewardFn = Callable[[str, dict], float]
REWARDS: dict[str, RewardFn] = {}

BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"

_NUM = r"\s*([+-]?\d+(?:\.\d+)?)\s*"
_PAIR = rf"\({_NUM},{_NUM}\)"
_BOX_BODY = re.compile(rf"\s*{_PAIR}\s*,\s*{_PAIR}\s*")
_POINT_BODY = re.compile(rf"\s*{_PAIR}\s*")
_SPAN = re.compile(re.escape(BOX_START) + r"(.*?)" + re.escape(BOX_END), re.DOTALL)
_BARE_POINT = re.compile(_PAIR)
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FRACTION = re.compile(r"([+-]?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
_SLASH = re.compile(r"([+-]?[\d.]+)/([\d.]+)")


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator adding a reward under `name` to REWARDS."""

    def wrap(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = fn
        return fn

    return wrap


def normalize_answer(text: str) -> str:
    """Case-, width- and whitespace-insensitive form; drops wrapping $...$ and a final period."""
    text = unicodedata.normalize("NFKC", text).strip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    text = re.sub(r"\s+", " ", text.lower())
    return text.rstrip(".").strip()


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


def _gold_answers(meta: dict, reward: str) -> list[str]:
    if "answer" not in meta:
        raise KeyError(f"reward {reward!r} needs sample_meta['answer']; got keys {sorted(meta)}")
    gold = meta["answer"]
    golds = gold if isinstance(gold, (list, tuple)) else [gold]
    return [str(g) for g in golds]


def _gold_box(meta: dict, reward: str) -> tuple[float, float, float, float]:
    box = meta.get("box")
    if box is None or len(box) != 4:
        raise KeyError(
            f"reward {reward!r} needs sample_meta['box'] = [x1, y1, x2, y2]; got {box!r}"
        )
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


def _answers_match(pred: str, gold: str, numeric: bool) -> bool:
    if normalize_answer(pred) == normalize_answer(gold):
        return True
    if numeric:
        p, g = parse_number(pred), parse_number(gold)
        if p is not None and g is not None:
            return math.isclose(p, g, rel_tol=1e-6, abs_tol=1e-12)
    return False


@register_reward("exact_answer")
def exact_answer(completion: str, sample_meta: dict) -> float:
    """1.0 iff the normalised final answer equals a normalised meta["answer"]."""
    _, answer = strip_thinking(completion)
    golds = _gold_answers(sample_meta, "exact_answer")
    return float(bool(answer) and any(_answers_match(answer, g, numeric=False) for g in golds))


@register_reward("boxed")
def boxed(completion: str, sample_meta: dict) -> float:
    """1.0 iff the last \\boxed{} of the final answer matches meta["answer"] (numerically if both
    parse as numbers, else as normalised text)."""
    _, answer = strip_thinking(completion)
    content = last_boxed(answer)
    if content is None:
        return 0.0
    golds = _gold_answers(sample_meta, "boxed")
    return float(any(_answers_match(content, g, numeric=True) for g in golds))


@register_reward("numeric_closeness")
def numeric_closeness(completion: str, sample_meta: dict) -> float:
    """Partial credit for a numeric answer: 1 / (1 + |pred - gold|), the best over the accepted
    golds; 1.0 iff exact, 0.0 when the final answer is not a number (or no gold is).

    Reward shaping for small models whose exact pass rate is low: a group's completions are then
    ranked by how close they are, so almost every group carries a learning signal.
    """
    golds = [parse_number(g) for g in _gold_answers(sample_meta, "numeric_closeness")]
    _, answer = strip_thinking(completion)
    pred = parse_number(answer) if answer else None
    if pred is None or not math.isfinite(pred):
        return 0.0
    scores = [1.0 / (1.0 + abs(pred - g)) for g in golds if g is not None]
    return max(scores, default=0.0)


@register_reward("think_format")
def think_format(completion: str, sample_meta: dict) -> float:
    """Format reward for the thinking switch.

    meta["thinking"] True (default): 1.0 iff the completion is exactly one `<think>R</think>A`
    block with non-empty reasoning R and non-empty answer A, nothing before `<think>` (an empty
    block is how no-thinking mode looks, so it does not count as thinking). With
    meta["think_in_prompt"] the prompt already ended in `<think>`, so the completion starts inside
    it. meta["thinking"] False: 1.0 iff the completion is non-empty and has no think tag at all.
    """
    text = clean_completion(completion)
    if sample_meta.get("think_in_prompt", False):
        text = THINK_OPEN + text
    opens, closes = text.count(THINK_OPEN), text.count(THINK_CLOSE)
    if not sample_meta.get("thinking", True):
        return float(opens == 0 and closes == 0 and bool(text.strip()))
    if opens != 1 or closes != 1:
        return 0.0
    m = re.fullmatch(r"\s*<think>(.*)</think>(.*)", text, re.DOTALL)
    return float(m is not None and bool(m[1].strip()) and bool(m[2].strip()))


def _first_span(text: str) -> str | None:
    m = _SPAN.search(text)
    return None if m is None else m[1]


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` of text, or None if absent/unparsable.

    With several boxes only the first counts (a grounding answer is one box; extra boxes cannot
    raise the reward).
    """
    span = _first_span(text)
    m = None if span is None else _BOX_BODY.fullmatch(span)
    if m is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in m.groups())
    return x1, y1, x2, y2


def parse_point(text: str) -> tuple[float, float] | None:
    """The predicted point: the first box span's centre or point `<|box_start|>(x,y)<|box_end|>`;
    without any box span, the first bare `(x,y)`. None if unparsable."""
    span = _first_span(text)
    if span is not None:
        if m := _BOX_BODY.fullmatch(span):
            x1, y1, x2, y2 = (float(v) for v in m.groups())
            return (x1 + x2) / 2, (y1 + y2) / 2
        if m := _POINT_BODY.fullmatch(span):
            return float(m[1]), float(m[2])
        return None
    m = _BARE_POINT.search(text)
    return None if m is None else (float(m[1]), float(m[2]))


def box_iou_value(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes; 0 when either is empty or inverted."""
    if a[2] <= a[0] or a[3] <= a[1] or b[2] <= b[0] or b[3] <= b[1]:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@register_reward("box_iou")
def box_iou(completion: str, sample_meta: dict) -> float:
    """IoU of the answer's first box with meta["box"] (0-1000 coordinates); 0 if unparsable."""
    gold = _gold_box(sample_meta, "box_iou")
    pred = parse_box(strip_thinking(completion)[1])
    return 0.0 if pred is None else box_iou_value(pred, gold)


@register_reward("point_in_box")
def point_in_box(completion: str, sample_meta: dict) -> float:
    """1.0 iff the answer's point (or first box's centre) lies in meta["box"], edges included."""
    x1, y1, x2, y2 = _gold_box(sample_meta, "point_in_box")
    point = parse_point(strip_thinking(completion)[1])
    return float(point is not None and x1 <= point[0] <= x2 and y1 <= point[1] <= y2)


def combined_reward(names_with_weights: dict[str, float]) -> RewardFn:
    """A RewardFn summing weight * REWARDS[name] over the given rewards."""
    unknown = sorted(set(names_with_weights) - set(REWARDS))
    if unknown or not names_with_weights:
        raise ValueError(
            f"combined_reward: unknown or no rewards {unknown}; registered: {sorted(REWARDS)}"
        )
    terms = [(REWARDS[name], float(w)) for name, w in names_with_weights.items()]

    def reward(completion: str, sample_meta: dict[str, Any]) -> float:
        return sum(w * fn(completion, sample_meta) for fn, w in terms)

    return reward
