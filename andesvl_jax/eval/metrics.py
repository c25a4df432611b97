"""Benchmark metrics: pure-Python scorers behind one registry, METRICS (name -> Metric).

A Metric scores one prediction against the answer facts a reader put in `Sample.meta`
(`metric(prediction, meta) -> dict`) and aggregates the per-sample dicts of a whole set
(`metric.aggregate(scores) -> dict`). Every per-sample dict has `score` (float, the sample's
contribution to the headline number) and `unparsable` (bool: the prediction could not be read as an
answer; it scores 0 and is counted, never raised). Every aggregate has `score`, `count` and
`unparsable`. Thinking-model output is scored on the text after the last `</think>`
(`strip_reasoning`). `evaluate_predictions` runs a metric over a set, with a per-category breakdown.
`top1_consistency` (numpy) compares two models' top-1 tokens position by position.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Score = dict[str, Any]
Box = tuple[float, float, float, float]  # (x1, y1, x2, y2), 0-1000 scale, x1 <= x2, y1 <= y2
Point = tuple[float, float]


def strip_reasoning(text: str) -> str:
    """The answer part of a reply: text after the last `</think>`; empty if thinking never ended."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1].strip()
    return "" if "<think>" in text else text.strip()


def references(meta: Mapping[str, Any]) -> list[str]:
    """The ground-truth answers of a sample: meta['answers'] (list) or [meta['answer']]."""
    refs = meta.get("answers")
    if refs is None:
        if meta.get("answer") is None:
            raise ValueError(f"sample meta has no 'answers' or 'answer' (keys: {sorted(meta)})")
        refs = [meta["answer"]]
    return [str(r) for r in refs]


# ---- VQAv2 answer normalisation (the official VQA evaluation's rules) ----

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


def _vqa_punctuation(text: str) -> str:
    # As the official evaluation: punctuation touching a space (or any text with a "1,000"-style
    # comma) is deleted, other punctuation becomes a space; periods not before a digit are deleted.
    out = text
    for p in _PUNCT:
        if p + " " in text or " " + p in text or _COMMA_BETWEEN_DIGITS.search(text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_DECIMAL.sub("", out)


def normalize_vqa_answer(text: str) -> str:
    """VQAv2 normalisation: punctuation, case, number words -> digits, articles, contractions."""
    text = _vqa_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def score_vqa_accuracy(prediction: str, meta: Mapping[str, Any]) -> Score:
    """min(#matching answers / 3, 1) with several ground truths, else normalised exact match."""
    pred, refs = (
        normalize_vqa_answer(prediction),
        [normalize_vqa_answer(r) for r in references(meta)],
    )
    matches = sum(r == pred for r in refs) if pred else 0
    score = min(matches / 3.0, 1.0) if len(refs) > 1 else float(matches)
    return {"score": score, "pred": pred, "unparsable": not pred}


# ---- string distances (own implementations) ----


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance (insert, delete, substitute; each cost 1) of two sequences."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (not necessarily contiguous)."""
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if ca == cb else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def longest_common_substring(a: str, b: str) -> str:
    """The longest contiguous string occurring in both a and b (the first one found on ties)."""
    best_len, best_end = 0, 0
    prev = [0] * (len(b) + 1)
    for i, ca in enumerate(a, start=1):
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, start=1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best_len:
                    best_len, best_end = cur[j], i
        prev = cur
    return a[best_end - best_len : best_end]


# ---- ANLS, relaxed accuracy, ROUGE ----


def _squash(text: str) -> str:
    return " ".join(text.strip().lower().split())


def score_anls(prediction: str, meta: Mapping[str, Any], threshold: float = 0.5) -> Score:
    """Average Normalised Levenshtein Similarity: max over ground truths of 1 - NL if NL < 0.5."""
    pred = _squash(prediction)
    best = 0.0
    for ref in map(_squash, references(meta)):
        longest = max(len(pred), len(ref))
        nl = levenshtein(pred, ref) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return {"score": best, "unparsable": not pred}


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?")


def _chart_number(text: str) -> list[float] | None:
    """Candidate values of a number-only answer ('1,234', '45%', '$3.5'); None if not a number."""
    t = text.strip().rstrip(".").replace(",", "").replace("$", "").strip()
    percent = t.endswith("%")
    t = t.rstrip("%").strip()
    if not _NUMBER.fullmatch(t):
        return None
    value = float(t)
    return [value, value / 100.0] if percent else [value]


def relaxed_match(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA: numbers within `tolerance` relative error ('%' may be read as /100), else exact."""
    pred_vals, target_vals = _chart_number(prediction), _chart_number(target)
    if pred_vals is None or target_vals is None:
        return _squash(prediction).rstrip(".") == _squash(target).rstrip(".")
    return any(
        abs(p - t) <= tolerance * abs(t) if t else p == t for p in pred_vals for t in target_vals
    )


def score_relaxed_accuracy(prediction: str, meta: Mapping[str, Any]) -> Score:
    """ChartQA relaxed accuracy: 5 % relative tolerance for numbers, exact match otherwise."""
    refs = references(meta)
    hit = any(relaxed_match(prediction, r) for r in refs)
    # A number was expected but the prediction is not a number at all: unreadable, not just wrong.
    numeric_expected = any(_chart_number(r) is not None for r in refs)
    unparsable = not prediction.strip() or (numeric_expected and _chart_number(prediction) is None)
    return {"score": float(hit), "unparsable": unparsable and not hit}


def _f_measure(overlap: float, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_1(prediction: str, reference: str) -> float:
    """ROUGE-1 F-measure over lower-cased whitespace tokens (clipped unigram overlap)."""
    p, r = prediction.lower().split(), reference.lower().split()
    overlap = sum((collections.Counter(p) & collections.Counter(r)).values())
    return _f_measure(overlap, len(p), len(r))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) from the longest common token subsequence."""
    p, r = prediction.lower().split(), reference.lower().split()
    return _f_measure(lcs_length(p, r), len(p), len(r))


def score_rouge(prediction: str, meta: Mapping[str, Any]) -> Score:
    """ROUGE-1 and ROUGE-L F (max over references); `score` is ROUGE-L."""
    refs = references(meta)
    r1 = max(rouge_1(prediction, r) for r in refs)
    rl = max(rouge_l(prediction, r) for r in refs)
    return {"score": rl, "rouge1": r1, "rougeL": rl, "unparsable": not prediction.split()}


# ---- multiple choice and yes/no ----

LETTERS = "ABCDEFGHIJ"
_ANSWER_IS = re.compile(
    r"(?i:answer)\s*(?i:is)?\s*[:：]?\s*(?i:option)?\s*[\(\[]?([A-J])(?![A-Za-z])"
)
_LEADING_LETTER = re.compile(r"[\(\[]?([A-J])(?:[\)\].:]\s|[\)\]]$)")
_LETTER_TOKEN_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})


def _option_text(text: str) -> str:
    return _squash(text).strip(" .。")


def _choice_from_text(text: str, options: Mapping[str, str]) -> str | None:
    pred = _option_text(text)
    exact = [k for k, v in options.items() if _option_text(v) == pred]
    if len(exact) == 1:
        return exact[0]
    found = [k for k, v in options.items() if _option_text(v) and _option_text(v) in pred]
    # "cat food" contains both options "cat" and "cat food": the one containing all others wins.
    for k in found:
        if all(_option_text(options[o]) in _option_text(options[k]) for o in found):
            return k
    return None


def extract_choice(prediction: str, options: Mapping[str, str] | None = None) -> str | None:
    """The option letter a reply picks ("B", "(B)", "B.", "Answer: B", option text) or None."""
    letters = sorted(options) if options else list(LETTERS)
    text = prediction.strip()
    if not text:
        return None
    bare = text.strip(" .:()[]*")
    if len(bare) == 1 and bare in letters:
        return bare
    explicit = [m for m in _ANSWER_IS.findall(text) if m in letters]
    if explicit:
        return explicit[-1]
    lead = _LEADING_LETTER.match(text)
    if lead and lead.group(1) in letters:
        return lead.group(1)
    tokens = text.translate(_LETTER_TOKEN_SEPARATORS).split()
    found = {t for t in tokens if t in letters}
    # A lone "A" in a sentence is usually the article, not an option (VLMEvalKit does the same).
    if len(found) == 1 and not (found == {"A"} and len(tokens) > 3):
        return found.pop()
    return _choice_from_text(text, options) if options else None


def score_multiple_choice(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Correct iff the extracted letter equals meta['answer'] (a letter, or an option's text)."""
    options = meta.get("options") or {}
    answer = str(meta["answer"]).strip()
    if not (len(answer) == 1 and answer.upper() in LETTERS):
        answer = _choice_from_text(answer, options) or answer
    pred = extract_choice(prediction, options)
    correct = pred is not None and pred == answer.upper()
    return {"score": float(correct), "pred": pred, "answer": answer, "unparsable": pred is None}


def extract_yes_no(prediction: str) -> str | None:
    """'yes' or 'no' if exactly one of the two words occurs (VLMEvalKit rule), else None."""
    words = set(_vqa_punctuation(prediction.lower()).split())
    if ("yes" in words) != ("no" in words):
        return "yes" if "yes" in words else "no"
    return None


def score_yes_no(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Correct iff the extracted yes/no equals meta['answer'] (case-insensitive)."""
    answer = str(meta["answer"]).strip().lower()
    pred = extract_yes_no(prediction)
    return {"score": float(pred == answer), "pred": pred, "answer": answer, "unparsable": not pred}


# ---- grounding ----

_N = r"(-?\d+(?:\.\d+)?)"
_PAIR = rf"\(\s*{_N}\s*,\s*{_N}\s*\)"
BOX_PATTERNS = [  # most specific first
    re.compile(rf"<\|box_start\|>\s*{_PAIR}\s*,\s*{_PAIR}\s*<\|box_end\|>"),
    re.compile(rf"{_PAIR}\s*,\s*{_PAIR}"),
    re.compile(rf"\[\s*{_N}\s*,\s*{_N}\s*,\s*{_N}\s*,\s*{_N}\s*\]"),
]
POINT_PATTERNS = [re.compile(_PAIR), re.compile(rf"\[\s*{_N}\s*,\s*{_N}\s*\]")]


def format_box(box: Sequence[float]) -> str:
    """The AndesVL box string `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` (0-1000 scale)."""
    x1, y1, x2, y2 = (round(v) for v in box)
    return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"


def parse_box(text: str) -> Box | None:
    """The first box in `text` (AndesVL box tokens, '(x1,y1),(x2,y2)' or '[x1,y1,x2,y2]')."""
    for pattern in BOX_PATTERNS:
        m = pattern.search(text)
        if m:
            x1, y1, x2, y2 = map(float, m.groups())
            return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)
    return None


def parse_point(text: str) -> Point | None:
    """The first point '(x,y)' or '[x,y]' in `text`."""
    for pattern in POINT_PATTERNS:
        m = pattern.search(text)
        if m:
            return float(m.group(1)), float(m.group(2))
    return None


def box_center(box: Sequence[float]) -> Point:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def point_in_box(point: Sequence[float], box: Sequence[float]) -> bool:
    """Whether the point lies inside the box, borders included."""
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when the union is empty."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_grounding(prediction: str, meta: Mapping[str, Any]) -> Score:
    """Point-in-box (predicted point, or predicted box centre, inside meta['box']) and IoU."""
    target = [float(v) for v in meta["box"]]
    box = parse_box(prediction)
    point = box_center(box) if box else parse_point(prediction)
    if point is None:
        return {"score": 0.0, "iou": 0.0, "iou@0.5": False, "pred_box": None, "unparsable": True}
    overlap = iou(box, target) if box else 0.0
    return {
        "score": float(point_in_box(point, target)),
        "iou": overlap,
        "iou@0.5": overlap >= 0.5,
        "pred_box": box,
        "pred_point": point,
        "unparsable": False,
    }


def normalize_referring(text: str) -> str:
    """Lower case, and drop whitespace, punctuation, symbols and special tokens like <|box_end|>."""
    text = re.sub(r"<\|[^|]*\|>", "", text.lower())
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c)[0] not in "PS")


def score_referring(prediction: str, meta: Mapping[str, Any]) -> Score:
    """AndesUI referring: correct iff prediction and reference share a non-empty substring."""
    pred = normalize_referring(prediction)
    best = max(
        (longest_common_substring(pred, normalize_referring(r)) for r in references(meta)), key=len
    )
    return {"score": float(bool(best)), "lcs": best, "unparsable": not pred}


# ---- aggregation and registry ----


def _counts(scores: Sequence[Score]) -> dict[str, Any]:
    n = len(scores)
    return {
        "score": sum(s["score"] for s in scores) / n if n else 0.0,
        "count": n,
        "unparsable": sum(bool(s["unparsable"]) for s in scores),
    }


def _mean_of(*keys: str) -> Callable[[Sequence[Score]], dict[str, Any]]:
    def aggregate(scores: Sequence[Score]) -> dict[str, Any]:
        out = _counts(scores)
        for k in keys:
            out[k] = sum(float(s[k]) for s in scores) / len(scores) if scores else 0.0
        return out

    return aggregate


def aggregate_pope(scores: Sequence[Score]) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 ('yes' is positive) and yes-ratio over a yes/no set.

    An unparsable prediction is wrong for accuracy, a miss for recall (when the truth is yes), and
    neither a yes nor a no for precision and yes-ratio.
    """
    out = _counts(scores)
    tp = sum(s["pred"] == "yes" and s["answer"] == "yes" for s in scores)
    fp = sum(s["pred"] == "yes" and s["answer"] != "yes" for s in scores)
    positives = sum(s["answer"] == "yes" for s in scores)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    yes_ratio = (tp + fp) / len(scores) if scores else 0.0
    return {
        **out,
        "accuracy": out["score"],
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": yes_ratio,
        "tp": tp,
        "fp": fp,
        "fn": positives - tp,
        "tn": sum(s["pred"] == "no" and s["answer"] == "no" for s in scores),
    }


@dataclasses.dataclass(frozen=True)
class Metric:
    """A per-sample scorer and the aggregator of its per-sample dicts."""

    name: str
    score: Callable[[str, Mapping[str, Any]], Score]
    aggregate: Callable[[Sequence[Score]], dict[str, Any]] = _counts

    def __call__(self, prediction: str, meta: Mapping[str, Any]) -> Score:
        return self.score(strip_reasoning(str(prediction)), meta)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("vqa_accuracy", score_vqa_accuracy),
        Metric("anls", score_anls),
        Metric("relaxed_accuracy", score_relaxed_accuracy),
        Metric("multiple_choice", score_multiple_choice),
        Metric("yes_no", score_yes_no),
        Metric("pope", score_yes_no, aggregate_pope),
        Metric("rouge", score_rouge, _mean_of("rouge1", "rougeL")),
        Metric("grounding", score_grounding, _mean_of("iou", "iou@0.5")),
        Metric("andesui_referring", score_referring),
    ]
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(f"metric {name!r} unknown; expected one of {sorted(METRICS)}")
    return METRICS[name]


def evaluate_predictions(
    metric: str, predictions: Sequence[str], metas: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Score every prediction; {'overall': aggregate, 'per_category': {...}, 'samples': [...]}.

    Categories come from meta['category'] where present.
    """
    if len(predictions) != len(metas):
        raise ValueError(f"{len(predictions)} predictions for {len(metas)} samples")
    m = get_metric(metric)
    scores = [m(p, meta) for p, meta in zip(predictions, metas, strict=True)]
    groups: dict[str, list[Score]] = collections.defaultdict(list)
    for s, meta in zip(scores, metas, strict=True):
        if meta.get("category") is not None:
            groups[str(meta["category"])].append(s)
    return {
        "metric": metric,
        "overall": m.aggregate(scores),
        "per_category": {c: m.aggregate(g) for c, g in sorted(groups.items())},
        "samples": scores,
    }


# ---- model-to-model agreement ----


def _top1(x: np.ndarray) -> np.ndarray:
    # Integer arrays are token ids already; anything else (incl. bfloat16) is logits [..., vocab].
    return x if x.dtype.kind in "iu" else np.asarray(x, np.float32).argmax(-1)


def top1_consistency(a, b, mask=None) -> dict[str, Any]:
    """Fraction of positions where two models' top-1 tokens agree.

    a, b: logits [..., vocab] (float) or token ids [...] (int), in any mix; mask: [...] bool,
    True where a position counts (default: all). Returns agreement, agreeing and positions.
    """
    ta, tb = _top1(np.asarray(a)), _top1(np.asarray(b))
    if ta.shape != tb.shape:
        raise ValueError(f"top-1 token shapes differ: {ta.shape} vs {tb.shape}")
    keep = np.ones(ta.shape, bool) if mask is None else np.asarray(mask, bool)
    if keep.shape != ta.shape:
        raise ValueError(f"mask shape {keep.shape} does not match token shape {ta.shape}")
    positions = int(keep.sum())
    if positions == 0:
        raise ValueError("mask selects no positions to compare")
    agreeing = int(((ta == tb) & keep).sum())
    return {"agreement": agreeing / positions, "agreeing": agreeing, "positions": positions}
