"""The GRPO rewards and the eval metrics score the same completion the same way.

Grounding: `point_in_box` == the `grounding` metric's score and `box_iou` == its IoU; short
answers: `exact_answer` == the `exact_match` metric. Both read the completion through
data/answers.py and data/boxes.py, so a model trained on a reward is judged by the same rule.
"""

import numpy as np
import pytest

from andesvl_jax.eval.metrics import METRICS
from andesvl_jax.train.rewards import REWARDS

GOLD = [100, 100, 300, 300]
# IoU of [110,110,310,310] with GOLD: 190^2 / (2 * 200^2 - 190^2).
SHIFTED_IOU = 190**2 / (2 * 200**2 - 190**2)


def _both(completion, meta):
    metric = METRICS["grounding"](completion, meta)
    hit, overlap = REWARDS["point_in_box"](completion, meta), REWARDS["box_iou"](completion, meta)
    assert hit == metric["score"], completion
    assert overlap == pytest.approx(metric["iou"], abs=1e-12), completion
    return hit, overlap


@pytest.mark.parametrize(
    "completion, hit, overlap",
    [
        # The two disagreements this module exists for: a plain-list box (eval 1.0, reward 0.0)
        # and reversed corners (eval IoU 0.82, reward IoU 0.0).
        ("[110,110,310,310]", 1.0, SHIFTED_IOU),
        ("<|box_start|>(310,310),(110,110)<|box_end|>", 1.0, SHIFTED_IOU),
        ("<|box_start|>(110,110),(310,310)<|box_end|><|im_end|>", 1.0, SHIFTED_IOU),
        ("(300,300),(100,100)", 1.0, 1.0),
        ("<|box_start|>(150,250)<|box_end|>", 1.0, 0.0),  # a point has no IoU
        ("click [100, 300]", 1.0, 0.0),  # borders count
        ("(0,0),(1000,1000)", 0.0, 0.04),  # contains the gold box, centre outside
        ("<think>it is (150,150)</think>(50,50)", 0.0, 0.0),  # the reasoning never counts
        ("<think>(150,150)", 0.0, 0.0),  # truncated: no answer
        ("<|box_start|>(a,b)<|box_end|> then (150,150)", 1.0, 0.0),
        ("(50,50) or [100,100,300,300]", 0.0, 0.0),  # only the first location counts
        ("the search icon", 0.0, 0.0),
    ],
)
def test_grounding_rewards_equal_the_metric(completion, hit, overlap):
    assert _both(completion, {"box": GOLD}) == (hit, pytest.approx(overlap, abs=1e-12))


def _random_completion(rng):
    x1, y1, x2, y2 = (int(v) for v in rng.integers(0, 1001, 4))
    box = [
        f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>",
        f"({x1}, {y1}), ({x2}, {y2})",
        f"[{x1},{y1},{x2},{y2}]",
        f"<|box_start|>({x1},{y1})<|box_end|>",
        f"({x1},{y1})",
        f"[{x1}.5, {y1}]",
        "<|box_start|>?<|box_end|>",
        "no idea",
    ][rng.integers(8)]
    prefix = ["", "Here: ", "<think>maybe (1,1)</think>", "<think></think>\n\n"][rng.integers(4)]
    suffix = ["", "<|im_end|>", " (999,999)", " [0,0,5,5]"][rng.integers(4)]
    return prefix + box + suffix


def test_grounding_rewards_equal_the_metric_on_generated_completions():
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(400):
        gold = sorted(rng.integers(0, 1001, 2)), sorted(rng.integers(0, 1001, 2))
        meta = {"box": [gold[0][0], gold[1][0], gold[0][1], gold[1][1]]}
        hits.append(_both(_random_completion(rng), meta)[0])
    assert 0 < sum(hits) < len(hits)  # both outcomes occur, so agreement is not vacuous


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        ("The Cat.", "the cat", 1.0),
        ("<think>4</think>5", "4", 0.0),
        ("$x + 1$<|im_end|>", "x  +  1", 1.0),
        ("4.0", "4", 0.0),  # exact match, not numeric
        ("Ｂ", ["A", "b"], 1.0),  # full-width letter: NFKC
        ("7", 7, 1.0),
        ("<think>7", "7", 0.0),
        ("  ", "7", 0.0),
    ],
)
def test_exact_answer_reward_equals_the_exact_match_metric(completion, answer, expected):
    meta = {"answer": answer}
    assert REWARDS["exact_answer"](completion, meta) == expected
    assert METRICS["exact_match"](completion, meta)["score"] == expected
