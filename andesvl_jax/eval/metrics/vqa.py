"""VQAv2 accuracy with the official VQA evaluation's answer normalisation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import gold_answers
from andesvl_jax.eval.metrics.base import Metric, Score

_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@"]
_PUNCT += ["`", ",", "?", "!"]
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_DECIMAL = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())
}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = {"a", "an", "the"}
# Canonical contractions; every spelling with some apostrophes dropped maps back to the canonical
# form. Forms whose apostrophe-less spelling is a word ("it's"/"its", "we'll"/"well") are left out.
_CANONICAL_CONTRACTIONS = """
aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
he'd he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll let's ma'am mightn't
mightn't've might've mustn't must've needn't not've o'clock oughtn't shan't she'd've she's
should've shouldn't shouldn't've somebody'd somebody'd've somebody'll somebody's someone'd
someone'd've someone'll someone's something'd something'd've something'll that's there'd
there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've
weren't what'll what're what's what've when's where'd where's where've who'd who'd've who'll who's
who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd
you'd've you'll you're you've
""".split()


def _contraction_variants(canonical: str) -> dict[str, str]:
    parts = canonical.split("'")
    out = {}
    for mask in range(1, 2 ** (len(parts) - 1)):  # bit k set: drop the k-th apostrophe
        text = parts[0]
        for k, part in enumerate(parts[1:]):
            text += ("" if mask >> k & 1 else "'") + part
        out[text] = canonical
    return out


_CONTRACTIONS = {k: v for c in _CANONICAL_CONTRACTIONS for k, v in _contraction_variants(c).items()}


def vqa_punctuation(text: str) -> str:
    """The official evaluation's punctuation rule: punctuation touching a space (or any punctuation
    in a text with a "1,000"-style comma) is deleted, other punctuation becomes a space; periods
    not before a digit are deleted."""
    out = text
    for p in _PUNCT:
        if p + " " in text or " " + p in text or _COMMA_BETWEEN_DIGITS.search(text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_DECIMAL.sub("", out)


def normalize_vqa_answer(text: str) -> str:
    """VQAv2 normalisation: punctuation, case, number words -> digits, articles, contractions."""
    text = vqa_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def score_vqa_accuracy(prediction: str, meta: Mapping[str, Any]) -> Score:
    """The official VQA accuracy with several ground truths: the mean, over leaving each of the n
    answers out, of min(#matches among the other n - 1 / 3, 1) (VQAv2's evaluation and
    VLMEvalKit's `vqa_score`; 3 of 10 matching gives 0.9, not 1). One answer: exact match."""
    pred = normalize_vqa_answer(prediction)
    refs = [normalize_vqa_answer(r) for r in gold_answers(meta, "metric 'vqa_accuracy'")]
    matches = sum(r == pred for r in refs) if pred else 0
    if len(refs) > 1:
        # Leaving out a matching answer leaves matches - 1 others; a non-matching one, matches.
        left_out = [min((matches - (r == pred)) / 3.0, 1.0) for r in refs]
        score = sum(left_out) / len(refs) if pred else 0.0
    else:
        score = float(matches)
    return {"score": score, "pred": pred, "unparsable": not pred}


VQA_ACCURACY = Metric("vqa_accuracy", score_vqa_accuracy)
