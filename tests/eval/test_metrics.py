"""Benchmark metrics on hand-worked cases: each fails if the definition is implemented wrong."""

import numpy as np
import pytest

from andesvl_jax.data.answers import strip_thinking
from andesvl_jax.data.boxes import format_box, iou, parse_box, parse_point
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.eval.metrics import (
    METRICS,
    evaluate_exact_match,
    evaluate_predictions,
    extract_choice,
    extract_yes_no,
    lcs_length,
    levenshtein,
    longest_common_substring,
    normalize_vqa_answer,
    relaxed_match,
    rouge_1,
    rouge_l,
    top1_consistency,
)


def score(metric, prediction, **meta):
    return METRICS[metric](prediction, meta)


# ---- VQA accuracy ----


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("Two dogs.", "2 dogs"),
        ("The cat", "cat"),
        ("an apple!", "apple"),
        ("dont know", "don't know"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("left-hand side", "left hand side"),
        ("None", "0"),
        ("  Yes\n", "yes"),
    ],
)
def test_vqa_normalisation(raw, normalised):
    assert normalize_vqa_answer(raw) == normalised


def test_vqa_accuracy_single_and_multiple_answers():
    assert score("vqa_accuracy", "Two dogs.", answer="2 dogs")["score"] == 1.0
    assert score("vqa_accuracy", "two cats", answer="2 dogs")["score"] == 0.0
    humans = ["2", "two", "2", "3", "3", "several", "2", "2", "3", "3"]
    assert score("vqa_accuracy", "Two", answers=humans)["score"] == 1.0  # 5 matches -> capped at 1
    # VQAv2 averages over leaving each human answer out: 1 match of 10 -> (9 * 1/3 + 0) / 10.
    assert score("vqa_accuracy", "several", answers=humans)["score"] == pytest.approx(0.3)
    # 4 matches ("3"): leaving a "3" out leaves 3 -> 1; either way capped: 1.0.
    assert score("vqa_accuracy", "3", answers=humans)["score"] == pytest.approx(1.0)
    # 3 matches of 10: (3 * 2/3 + 7 * 1) / 10 = 0.9, where min(3/3, 1) would say 1.
    three_of_ten = ["red"] * 3 + ["blue"] * 7
    assert score("vqa_accuracy", "red", answers=three_of_ten)["score"] == pytest.approx(0.9)
    # 2 of 3: (1/3 + 1/3 + 2/3) / 3.
    assert score("vqa_accuracy", "three", answers=["3", "3", "4"])["score"] == pytest.approx(4 / 9)
    assert score("vqa_accuracy", "five", answers=humans)["score"] == 0.0
    empty = score("vqa_accuracy", "  ", answer="2")
    assert empty["unparsable"] and empty["score"] == 0.0


# ---- ANLS ----


def test_anls_partial_credit_threshold_and_max_over_answers():
    # "hello word" is 1 deletion from "hello world" (11 chars): 1 - 1/11.
    assert score("anls", "hello word", answer="hello world")["score"] == pytest.approx(10 / 11)
    assert score("anls", "HELLO  World", answer="hello world")["score"] == 1.0
    assert score("anls", "abcx", answer="abcd")["score"] == pytest.approx(0.75)  # NL 0.25
    assert score("anls", "abxy", answer="abcd")["score"] == 0.0  # NL 0.5 is not < 0.5
    got = score("anls", "hello word", answers=["xyz", "hello world"])["score"]
    assert got == pytest.approx(10 / 11)
    assert score("anls", "", answer="x")["unparsable"]


def test_levenshtein_and_lcs():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert longest_common_substring("abcdef", "zcdeq") == "cde"
    assert longest_common_substring("abc", "xyz") == ""
    assert longest_common_substring("设置按钮", "打开设置") == "设置"


# ---- ChartQA relaxed accuracy ----


@pytest.mark.parametrize(
    "pred, target, ok",
    [
        ("4.9", "5.0", True),  # 2 % off
        ("4.7", "5.0", False),  # 6 % off
        ("5.2", "5", True),
        (" 5.1 ", "5", True),  # the prediction is stripped
        ("0.45", "45%", True),  # a percentage target is read / 100
        ("45%", "0.45", True),
        # The reference (pix2struct / VLMEvalKit relaxed_correctness) reads numbers with Python
        # float() only: thousands commas, currency and fractions are strings, compared exactly.
        ("1,234", "1234", False),
        ("$12", "12", False),
        ("1/2", "0.5", False),
        ("45%", "45", False),
        ("0", "0", True),  # a target of 0 falls back to string equality...
        ("0.0", "0", False),  # ...so "0.0" is wrong
        ("0.01", "0", False),
        ("Yes", "yes", True),
        ("blue", "red", False),
    ],
)
def test_relaxed_match(pred, target, ok):
    assert relaxed_match(pred, target) is ok


def test_relaxed_accuracy_unparsable_when_number_expected():
    out = score("relaxed_accuracy", "about five", answer="5")
    assert out["unparsable"] and out["score"] == 0.0
    assert not score("relaxed_accuracy", "red", answer="blue")["unparsable"]
    assert score("relaxed_accuracy", "4.9", answers=["5.0"])["score"] == 1.0
    trailing = score("relaxed_accuracy", "4.9.", answers=["5.0"])  # float("4.9.") fails
    assert trailing["score"] == 0.0 and trailing["unparsable"]


# ---- multiple choice ----

OPTIONS = {"A": "a cat", "B": "a dog", "C": "a bird", "D": "a fish"}


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("Answer: B", "B"),
        ("The answer is (C).", "C"),
        ("B. a dog", "B"),
        ("a dog", "B"),
        ("I think it shows a bird.", "C"),
        ("Option D is right", "D"),
        ("A", "A"),
        ("A cat is sitting on a mat", "A"),  # no letter token; option text "a cat" matches
        ("A big animal sits there quietly", None),  # "A" is an article here
        ("E", None),  # not an option
        ("I cannot tell", None),
        ("", None),
    ],
)
def test_extract_choice(reply, letter):
    assert extract_choice(reply, OPTIONS) == letter


def test_multiple_choice_scoring_and_unparsable():
    assert score("multiple_choice", "(B)", answer="B", options=OPTIONS)["score"] == 1.0
    assert score("multiple_choice", "C", answer="B", options=OPTIONS)["score"] == 0.0
    assert score("multiple_choice", "B", answer="a dog", options=OPTIONS)["score"] == 1.0
    out = score("multiple_choice", "no idea", answer="B", options=OPTIONS)
    assert out == {"score": 0.0, "pred": None, "answer": "B", "unparsable": True}
    agg = METRICS["multiple_choice"].aggregate(
        [score("multiple_choice", p, answer="B", options=OPTIONS) for p in ["B", "C", "??", "b."]]
    )
    assert agg == {"score": 0.25, "count": 4, "unparsable": 2}


def test_thinking_output_is_scored_after_think():
    reply = "<think>maybe A, maybe B</think>The answer is C"
    assert strip_thinking(reply)[1] == "The answer is C"
    assert score("multiple_choice", reply, answer="C", options=OPTIONS)["score"] == 1.0
    assert score("multiple_choice", "<think>A or B", answer="A", options=OPTIONS)["unparsable"]


# ---- yes/no and POPE ----


def test_extract_yes_no():
    assert extract_yes_no("Yes, there is a dog.") == "yes"
    assert extract_yes_no("No.") == "no"
    assert extract_yes_no("yes and no") is None
    assert extract_yes_no("Nobody knows") is None


def test_pope_on_hand_counted_confusion_matrix():
    truth = ["yes", "yes", "yes", "yes", "no", "no"]
    preds = ["Yes", "yes.", "unsure", "No", "Yes", "no"]
    # tp=2 fp=1 tn=1 fn=1 and one unparsable reply whose truth is yes (a miss for recall).
    agg = evaluate_predictions("pope", preds, [{"answer": t} for t in truth])["overall"]
    assert (agg["tp"], agg["fp"], agg["tn"], agg["fn"], agg["unparsable"]) == (2, 1, 1, 2, 1)
    assert agg["accuracy"] == pytest.approx(3 / 6)
    assert agg["precision"] == pytest.approx(2 / 3)
    assert agg["recall"] == pytest.approx(2 / 4)
    assert agg["f1"] == pytest.approx(4 / 7)  # 2 * (2/3) * (1/2) / (2/3 + 1/2)
    assert agg["yes_ratio"] == pytest.approx(3 / 6)


# ---- ROUGE ----


def test_rouge_hand_worked():
    ref = "The cat sat on the mat"
    # Same bag of words, but the longest common subsequence "the cat on the mat" has 5 of 6 tokens.
    assert rouge_1("the cat on the mat sat", ref) == pytest.approx(1.0)
    assert rouge_l("the cat on the mat sat", ref) == pytest.approx(5 / 6)
    assert rouge_1("the cat", ref) == pytest.approx(0.5)  # P 1, R 1/3
    assert rouge_1("the the the", "the cat") == pytest.approx(0.4)  # clipped overlap 1: P 1/3 R 1/2
    assert rouge_l("", ref) == 0.0
    out = score("rouge", "the cat on the mat sat", answers=["dog", ref])
    assert out["rouge1"] == pytest.approx(1.0) and out["score"] == pytest.approx(5 / 6)
    assert score("rouge", " ", answer=ref)["unparsable"]


# ---- grounding ----


def test_parse_boxes_and_points():
    box = (100.0, 200.0, 300.0, 400.0)
    assert parse_box("<|box_start|>(100,200),(300,400)<|box_end|>") == box
    assert parse_box("it is at (100, 200), (300, 400).") == box
    assert parse_box("[100, 200, 300, 400]") == box
    assert parse_box("(300,400),(100,200)") == box  # corners in either order
    assert parse_box("click (150,250)") is None
    assert parse_point("click (150,250)") == (150.0, 250.0)
    assert parse_point("[15.5, 20]") == (15.5, 20.0)
    assert parse_point("nowhere") is None
    assert parse_box(format_box([100.4, 199.6, 300, 400])) == box


def test_iou_of_known_boxes():
    assert iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_grounding_point_in_box_and_iou():
    gt = {"box": [100, 100, 300, 300]}
    inner = score("grounding", "<|box_start|>(150,150),(250,250)<|box_end|>", **gt)
    assert inner["score"] == 1.0 and inner["iou"] == pytest.approx(0.25) and not inner["iou@0.5"]
    # A huge box contains the target but its centre (500, 500) does not fall inside it.
    assert score("grounding", "(0,0),(1000,1000)", **gt)["score"] == 0.0
    close = score("grounding", "[110,110,310,310]", **gt)
    assert close["iou@0.5"] and close["iou"] == pytest.approx(190**2 / (2 * 200**2 - 190**2))
    assert score("grounding", "(200,120)", **gt)["score"] == 1.0  # a point; IoU needs a box
    assert score("grounding", "(50,50)", **gt)["score"] == 0.0
    assert score("grounding", "the search icon", **gt)["unparsable"]
    agg = METRICS["grounding"].aggregate(
        [inner, close, score("grounding", "??", **gt), score("grounding", "(50,50)", **gt)]
    )
    assert agg["score"] == 0.5 and agg["unparsable"] == 1 and agg["iou@0.5"] == 0.25


# ---- AndesUI referring ----


def test_referring_longest_common_substring():
    assert score("andesui_referring", "搜索按钮", answer="搜索")["score"] == 1.0
    out = score("andesui_referring", "The SEARCH box.", answer="search bar")
    assert out["score"] == 1.0 and out["lcs"] == "searchb"  # whitespace is dropped first
    assert score("andesui_referring", "xyz", answer="abc")["score"] == 0.0
    assert score("andesui_referring", "!!! ...", answer="abc")["unparsable"]
    # Box tokens and punctuation are not text the description could share.
    assert score("andesui_referring", "<|box_end|>!", answer="box")["score"] == 0.0


# ---- exact match ----


def test_exact_match_uses_the_normalised_answer():
    assert score("exact_match", "<think>r</think> Red.<|im_end|>", answer="red")["score"] == 1.0
    assert score("exact_match", "re", answer="red")["score"] == 0.0
    assert score("exact_match", "4.0", answers=["four", "4"])["score"] == 0.0  # not numeric
    assert score("exact_match", "", answer="red")["unparsable"]


class _FakeEngine:
    """Answers each sample with its meta['reply'] (what `Engine.generate` is used for here)."""

    def generate(self, samples, max_new_tokens):
        class Done:
            def __init__(self, answer):
                self.answer = answer

        return [Done(s.meta["reply"]) for s in samples]


def test_evaluate_exact_match_per_task():
    def sample(task, answer, reply):
        meta = {"task": task, "answer": answer, "reply": reply}
        return Sample([Message("user", "q"), Message("assistant", answer)], meta=meta)

    samples = [sample("count", "3", "3"), sample("count", "4", "5"), sample("color", "red", "Red")]
    out = evaluate_exact_match(_FakeEngine(), samples)
    assert out["correct"] == [True, False, True]
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["per_task"] == {"color": 1.0, "count": 0.5}
    assert out["counts"] == {"count": 2, "color": 1}
    assert out["examples"][1] == {"task": "count", "answer": "4", "prediction": "5"}


# ---- registry, per-category aggregation ----


def test_evaluate_predictions_per_category():
    metas = [
        {"answer": "yes", "category": "color"},
        {"answer": "no", "category": "color"},
        {"answer": "yes", "category": "count"},
    ]
    out = evaluate_predictions("yes_no", ["yes", "yes", "yes"], metas)
    assert out["overall"]["score"] == pytest.approx(2 / 3)
    assert out["per_category"]["color"]["score"] == 0.5
    assert out["per_category"]["count"]["count"] == 1
    with pytest.raises(KeyError, match="metric 'bleu' unknown"):
        evaluate_predictions("bleu", [], [])
    with pytest.raises(ValueError, match="2 predictions for 1 samples"):
        evaluate_predictions("yes_no", ["a", "b"], metas[:1])
    with pytest.raises(KeyError, match="metric 'anls' needs sample meta 'answer' or 'answers'"):
        METRICS["anls"]("x", {})


# ---- top-1 consistency ----


def test_top1_consistency_logits_ids_and_mask():
    rng = np.random.default_rng(0)
    logits_a = rng.normal(size=(2, 5, 11)).astype(np.float32)
    ids_a = logits_a.argmax(-1)
    ids_b = ids_a.copy()
    ids_b[0, 1] = (ids_b[0, 1] + 1) % 11
    ids_b[1, 4] = (ids_b[1, 4] + 1) % 11
    assert top1_consistency(logits_a, logits_a)["agreement"] == 1.0
    out = top1_consistency(logits_a, ids_b)
    assert out == {"agreement": 0.8, "agreeing": 8, "positions": 10}
    mask = np.ones((2, 5), bool)
    mask[1, 3:] = False  # padding hides one disagreement
    assert top1_consistency(ids_a, ids_b, mask) == {
        "agreement": 7 / 8,
        "agreeing": 7,
        "positions": 8,
    }
    with pytest.raises(ValueError, match="shapes differ"):
        top1_consistency(ids_a, ids_a[:1])
    with pytest.raises(ValueError, match="no positions"):
        top1_consistency(ids_a, ids_b, np.zeros((2, 5), bool))
