"""Hand-made cases for every GRPO reward and the answer extraction they share."""

import pytest

from andesvl_jax.data.answers import last_boxed, parse_number, strip_thinking
from andesvl_jax.train.rewards import REWARDS, combined_reward, register_reward

BOX = "<|box_start|>({},{}),({},{})<|box_end|>"


def test_registry_holds_every_reward():
    expected = {
        "exact_answer",
        "boxed",
        "think_format",
        "box_iou",
        "point_in_box",
        "numeric_closeness",
    }
    assert expected <= set(REWARDS)
    with pytest.raises(ValueError, match="already registered"):
        register_reward("boxed")(lambda c, m: 0.0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>\nstep 1\n</think>\n\n42", ("step 1", "42")),
        ("plain answer", (None, "plain answer")),
        ("<think>still thinking", ("still thinking", "")),  # truncated: no answer yet
        ("<think>a</think>b</think> final<|im_end|>", ("a</think>b", "final")),  # the last close
        ("<think></think>\n\nyes<|im_end|><|endoftext|>", ("", "yes")),
    ],
)
def test_strip_thinking(text, expected):
    assert strip_thinking(text) == expected


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        ("<think>2+2 is four</think>\n 4 ", "4", 1.0),
        ("The Cat. ", "the cat", 1.0),
        ("$x + 1$", "x  +  1", 1.0),
        ("<think>the answer is 4</think>5", "4", 0.0),  # the reasoning does not count
        ("<think>4", "4", 0.0),  # truncated, no answer
        ("4.0", "4", 0.0),  # exact match only: numbers are compared by `boxed`
        ("B", ["A", "b"], 1.0),  # several accepted answers
        ("7", 7, 1.0),  # non-string gold
    ],
)
def test_exact_answer(completion, answer, expected):
    assert REWARDS["exact_answer"](completion, {"answer": answer}) == expected


def test_exact_answer_missing_meta_is_a_clear_error():
    with pytest.raises(KeyError, match="answer"):
        REWARDS["exact_answer"]("4", {})


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{{a}+{b}}", "{a}+{b}"),
        (r"\boxed{\frac{1}{2}", None),  # unbalanced
        ("no box", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        (r"<think>half</think>The answer is \boxed{\frac{1}{2}}", "1/2", 1.0),
        (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
        (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", 1.0),
        (r"\boxed{1,000}", "1000", 1.0),
        (r"\boxed{ 3.0 }", "3", 1.0),
        (r"\boxed{3} wait, \boxed{4}", "4", 1.0),  # the last box counts
        (r"\boxed{3} wait, \boxed{4}", "3", 0.0),
        (r"\boxed{x^{2}}", "X^{2}", 1.0),  # non-numeric: normalised text
        (r"\boxed{\frac{1}{3}", "1/3", 0.0),  # unbalanced braces
        ("<think>\\boxed{5}</think> 5", "5", 0.0),  # a box only in the reasoning
        ("5", "5", 0.0),  # no box at all
        (r"\boxed{1/0}", "1", 0.0),  # unparsable number, different text
    ],
)
def test_boxed(completion, answer, expected):
    assert REWARDS["boxed"](completion, {"answer": answer}) == expected


def test_parse_number():
    assert parse_number(r"-\frac{3}{4}") == -0.75
    assert parse_number("1e3") == 1000.0
    assert parse_number("1,2") is None and parse_number("abc") is None


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        ("7", "7", 1.0),
        ("7.0<|im_end|>", 7, 1.0),
        ("8", "7", 0.5),  # 1 / (1 + |8 - 7|)
        ("4", "7", 0.25),
        ("<think>it is 7</think>10", "7", 0.25),  # only the final answer counts
        ("<think>7", "7", 0.0),  # truncated, no answer
        ("seven", "7", 0.0),  # not a number
        ("", "7", 0.0),
        ("3", ["5", "2"], 0.5),  # the closest accepted answer
        ("3", "red", 0.0),  # a non-numeric gold gives no credit
        ("1e400", "7", 0.0),  # overflow is not a number
    ],
)
def test_numeric_closeness(completion, answer, expected):
    assert REWARDS["numeric_closeness"](completion, {"answer": answer}) == pytest.approx(expected)


def test_numeric_closeness_missing_meta_is_a_clear_error():
    with pytest.raises(KeyError, match="answer"):
        REWARDS["numeric_closeness"]("four", {})


@pytest.mark.parametrize(
    "completion, meta, expected",
    [
        ("<think>\nreason\n</think>\n\nanswer<|im_end|>", {}, 1.0),
        ("<think>reason</think>answer", {"thinking": True}, 1.0),
        ("answer without thinking", {"thinking": True}, 0.0),  # missing think block
        ("<think>reason</think>   ", {}, 0.0),  # empty answer
        ("<think>  </think>answer", {}, 0.0),  # empty reasoning is no-thinking mode
        ("<think>a</think>b<think>c</think>d", {}, 0.0),  # two blocks
        ("<think>a</think>b</think>c", {}, 0.0),
        ("preamble <think>a</think>b", {}, 0.0),
        ("<think>reasoning, never closed", {}, 0.0),
        ("reason</think>answer", {"think_in_prompt": True}, 1.0),
        ("just the answer", {"thinking": False}, 1.0),
        ("<think></think>the answer", {"thinking": False}, 0.0),
        ("<think>r</think>the answer", {"thinking": False}, 0.0),
        ("   ", {"thinking": False}, 0.0),
    ],
)
def test_think_format(completion, meta, expected):
    assert REWARDS["think_format"](completion, meta) == expected


@pytest.mark.parametrize(
    "completion, expected",
    [
        (BOX.format(100, 100, 300, 300), 1.0),
        (BOX.format(200, 100, 400, 300), (100 * 200) / (2 * 200 * 200 - 100 * 200)),
        ("<|object_ref_start|>ok<|object_ref_end|>" + BOX.format(100, 100, 300, 300), 1.0),
        ("<|box_start|>( 100 , 100 ) , ( 300 , 300 )<|box_end|>", 1.0),  # spaces tolerated
        (BOX.format(100, 100, 300, 300) + BOX.format(0, 0, 10, 10), 1.0),  # two boxes: first
        (BOX.format(0, 0, 10, 10) + BOX.format(100, 100, 300, 300), 0.0),
        (BOX.format(600, 600, 900, 900), 0.0),  # disjoint
        (BOX.format(300, 300, 100, 100), 1.0),  # corners in either order (data/boxes.py)
        ("(100,100),(300,300)", 1.0),  # plain notations count, as in the eval metric
        ("[200, 100, 400, 300]", (100 * 200) / (2 * 200 * 200 - 100 * 200)),
        ("<|box_start|>(100,100)<|box_end|>", 0.0),  # a point is not a box
        ("<|box_start|>(a,b),(c,d)<|box_end|>", 0.0),
        ("<think>" + BOX.format(100, 100, 300, 300) + "</think>none", 0.0),
    ],
)
def test_box_iou(completion, expected):
    got = REWARDS["box_iou"](completion, {"box": [100, 100, 300, 300]})
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<|box_start|>(150,250)<|box_end|>", 1.0),
        ("<|box_start|>(100,300)<|box_end|>", 1.0),  # edges count
        ("click (150, 250)", 1.0),  # a bare point
        (BOX.format(100, 100, 200, 200), 1.0),  # centre (150, 150)
        (BOX.format(0, 0, 100, 100), 0.0),  # centre (50, 50)
        ("<|box_start|>(350,250)<|box_end|>", 0.0),
        ("<|box_start|>garbage<|box_end|> (150,150)", 1.0),  # an unreadable span is no location
        ("(50,50) then (150,150)", 0.0),  # only the first location counts
        ("[110,110,310,310]", 1.0),  # centre (210, 210); the eval metric scores it a hit too
        ("somewhere in the middle", 0.0),
    ],
)
def test_point_in_box(completion, expected):
    assert REWARDS["point_in_box"](completion, {"box": [100, 100, 300, 300]}) == expected


def test_box_rewards_need_a_box():
    with pytest.raises(KeyError, match="reward 'box_iou' needs sample meta 'box'"):
        REWARDS["box_iou"]("x", {})
    with pytest.raises(ValueError, match="reward 'point_in_box'.*not a box"):
        REWARDS["point_in_box"]("x", {"box": [1, 2, 3]})


def test_box_rewards_read_a_box_stored_as_text():
    # The synthetic GUI tasks store the gold box as its answer text.
    meta = {"box": BOX.format(100, 100, 300, 300)}
    assert REWARDS["point_in_box"]("(150,150)", meta) == 1.0
    assert REWARDS["box_iou"](BOX.format(100, 100, 300, 300), meta) == 1.0


def test_combined_reward():
    fn = combined_reward({"boxed": 1.0, "think_format": 0.5})
    meta = {"answer": "2"}
    assert fn(r"<think>one plus one</think>\boxed{2}", meta) == 1.5
    assert fn(r"\boxed{2}", meta) == 1.0
    assert fn(r"<think>r</think>\boxed{3}", meta) == 0.5
    with pytest.raises(ValueError, match="unknown"):
        combined_reward({"no_such_reward": 1.0})
