"""Rule-based rewards for GRPO: a registry of RewardFn(completion, sample_meta) -> float.

Completions are the decoded response text with special tokens kept (the box tokens are special
tokens); trailing `<|im_end|>` / `<|endoftext|>` markers are ignored. Answer-based rewards read only
the final answer: the text after the last `</think>` (see `strip_thinking`), so a box or \\boxed{}
inside the reasoning never scores. Meta keys: "answer" (str, number, or a list of accepted ones),
"box" ([x1, y1, x2, y2] on the 0-1000 scale, or its text), "thinking" (bool, default True).
Answers are compared by data/answers.py and boxes read and scored by data/boxes.py, the same code
the eval metrics use, so a reward and its metric agree on every completion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from andesvl_jax.data.answers import (
    answers_match,
    clean_completion,
    gold_answers,
    last_boxed,
    parse_number,
    strip_thinking,
)
from andesvl_jax.data.boxes import gold_box, ground
from andesvl_jax.data.chat import THINK_CLOSE, THINK_OPEN

RewardFn = Callable[[str, dict], float]
REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator adding a reward under `name` to REWARDS."""

    def wrap(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = fn
        return fn

    return wrap


@register_reward("exact_answer")
def exact_answer(completion: str, sample_meta: dict) -> float:
    """1.0 iff the normalised final answer equals a normalised meta["answer"]."""
    _, answer = strip_thinking(completion)
    golds = gold_answers(sample_meta, "reward 'exact_answer'")
    return float(bool(answer) and any(answers_match(answer, g, numeric=False) for g in golds))


@register_reward("boxed")
def boxed(completion: str, sample_meta: dict) -> float:
    """1.0 iff the last \\boxed{} of the final answer matches meta["answer"] (numerically if both
    parse as numbers, else as normalised text)."""
    _, answer = strip_thinking(completion)
    content = last_boxed(answer)
    if content is None:
        return 0.0
    golds = gold_answers(sample_meta, "reward 'boxed'")
    return float(any(answers_match(content, g, numeric=True) for g in golds))


@register_reward("numeric_closeness")
def numeric_closeness(completion: str, sample_meta: dict) -> float:
    """Partial credit for a numeric answer: 1 / (1 + |pred - gold|), the best over the accepted
    golds; 1.0 iff exact, 0.0 when the final answer is not a number (or no gold is).

    Reward shaping for small models whose exact pass rate is low: a group's completions are then
    ranked by how close they are, so almost every group carries a learning signal.
    """
    golds = [parse_number(g) for g in gold_answers(sample_meta, "reward 'numeric_closeness'")]
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


def _grounding(completion: str, sample_meta: dict, reward: str):
    gold = gold_box(sample_meta, f"reward {reward!r}")
    return ground(strip_thinking(completion)[1], gold)


@register_reward("box_iou")
def box_iou(completion: str, sample_meta: dict) -> float:
    """IoU of the answer's location with meta["box"] (0-1000); 0 for a point or no location."""
    return _grounding(completion, sample_meta, "box_iou").iou


@register_reward("point_in_box")
def point_in_box(completion: str, sample_meta: dict) -> float:
    """1.0 iff the answer's point (or box centre) lies in meta["box"], borders included."""
    return float(_grounding(completion, sample_meta, "point_in_box").hit)


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
