"""A completion's answer: end markers removed, the `<think>reasoning</think>` block split off.

The one place that turns generated text into the answer that metrics (eval/) and rewards (train/)
score.
"""

from __future__ import annotations

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
