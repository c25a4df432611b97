"""Synthetic corpus: determinism, splits, every task encodes, answers verifiable by construction."""

import numpy as np
import pytest

from andesvl_jax.data.boxes import parse_boxes
from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.interleave import move_images_first
from andesvl_jax.data.sample import IMAGE_TAG, Message, Sample
from andesvl_jax.data.synthetic import MIXTURES, TASKS, SyntheticSource
from andesvl_jax.data.tokenizer import TextTokenizer

TOK = TextTokenizer.default()


def _same(a, b):
    return (
        a.messages == b.messages
        and len(a.images) == len(b.images)
        and all(
            np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip(a.images, b.images, strict=True)
        )
    )


def test_deterministic_by_seed_and_index():
    a, b = SyntheticSource("all", seed=3), SyntheticSource("all", seed=3)
    for i in (0, 7, 123):
        assert _same(a[i], b[i])
    assert (
        sum(
            _same(SyntheticSource("all", seed=3)[i], SyntheticSource("all", seed=4)[i])
            for i in range(20)
        )
        < 3
    )
    train, ev = SyntheticSource("all", split="train"), SyntheticSource("all", split="eval")
    assert sum(_same(train[i], ev[i]) for i in range(20)) < 3


# The tasks of the data package itself; plugins (e.g. agent/'s bilingual tasks, which need their
# grown tokenizer and are tested in tests/agent) register more into TASKS when collected first.
CORE_TASKS = sorted(t for t, fn in TASKS.items() if fn.__module__.startswith("andesvl_jax.data."))


@pytest.mark.parametrize("task", CORE_TASKS)
def test_every_task_encodes_with_short_answer(task):
    src = SyntheticSource({task: 1.0}, seed=1)
    enc = SampleEncoder(TOK, EncodeSpec(max_tokens=2048, max_patches=2048))
    for i in range(5):
        s = src[i]
        ex = enc(s)
        assert s.meta["task"] == task and ex.num_tokens > 0
        if s.kind == "chat":
            assert s.answer is not None and len(s.answer) < 200
            assert (TOK.encode(s.answer) > 0).all(), (
                "answer has characters outside the tiny vocabulary"
            )


def test_answers_are_checkable():
    src = SyntheticSource("all", size=400, seed=0)
    for i in range(200):
        s = src[i]
        t = s.meta["task"]
        if t in ("count", "ocr_digits", "math", "text_arith"):
            assert s.answer.isdigit()
        if t == "hallucination":
            assert s.answer == {"present": "yes", "absent": "no"}[s.meta["probe"]]
        if t == "gui_grounding" or t == "gui_qa":
            (box,) = parse_boxes(s.answer)
            assert 0 <= box[0] < box[2] <= 1000 and 0 <= box[1] < box[3] <= 1000
        if t == "multi_image":
            c = s.meta["counts"]
            assert s.answer == ("first" if c[0] > c[1] else "second")
        if t == "preference":
            assert s.meta["chosen"] != s.meta["rejected"]
        if t == "text_reading":
            k = s.meta["item"]
            colour, shape = s.meta["items"][k - 1]
            assert not s.images and f"Item {k} is a {colour} {shape}." in s.messages[0].content
            assert s.answer == (colour if "colour" in s.messages[0].content else shape)
        if t == "text_document":
            assert not s.images and s.kind == "document"


def test_count_answers_in_range_with_difficulty():
    src = SyntheticSource({"count": 1.0}, seed=2, size=50)
    for i in range(10):
        s = src[i]
        assert int(s.answer) in range(1, 7) and s.meta["difficulty"] in ("easy", "hard")


def test_math_digits_answer_is_the_value_of_the_drawn_expression():
    src = SyntheticSource({"math_digits": 1.0}, seed=2, size=200)
    seen = set()
    for i in range(200):
        s = src[i]
        expr = s.meta["expression"]
        a, op, b = int(expr[0]), expr[1], int(expr[2])
        assert len(expr) == 3 and op in "+-" and s.answer == str(a + b if op == "+" else a - b)
        assert int(s.answer) >= 0 and len(s.images) == 1
        easy = op == "+" and a + b < 10
        assert s.meta["difficulty"] == ("easy" if easy else "hard")
        seen.add((op, s.meta["difficulty"]))
    assert seen == {("+", "easy"), ("+", "hard"), ("-", "hard")}


def test_mixtures_reference_known_tasks():
    for name, mix in MIXTURES.items():
        assert set(mix) <= set(TASKS), name


def _original_order(m):
    """Walk the moved text: leading tags are the moved images, '[image k]' points at images[k-1]."""
    import re

    text = m.messages[0].content
    lead = len(text) - len(text.lstrip(IMAGE_TAG + "\n"))
    n_moved = text[:lead].count(IMAGE_TAG)
    order, kept = [], n_moved
    for tok in re.findall(r"\[image (\d+)\]|(<image>)", text[lead:]):
        if tok[0]:
            order.append(int(m.images[int(tok[0]) - 1][0, 0, 0]))
        else:
            order.append(int(m.images[kept][0, 0, 0]))
            kept += 1
    return order


def test_move_images_first_keeps_tag_order():
    imgs = [np.full((4, 4, 3), k, np.uint8) for k in range(4)]
    s = Sample(
        [Message("user", "a <image> b <image> c <image> d <image> e")], imgs, kind="document"
    )
    moved = [move_images_first(s, np.random.default_rng(k), 0.5) for k in range(80)]
    for m in moved:
        assert len(m.images) == 4 and _original_order(m) == [0, 1, 2, 3]
    assert any("[image" in m.messages[0].content for m in moved)
    assert any("[image" not in m.messages[0].content for m in moved)
    assert move_images_first(s, np.random.default_rng(5), 0.5).messages == moved[5].messages
