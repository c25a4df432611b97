"""ROUGE-1 and ROUGE-L F-measures (max over references), computed by Google's `rouge-score`.

The package's own tokenizer lower-cases and keeps runs of `[a-z0-9]` (punctuation and every
non-ASCII character dropped), so Chinese text would have no tokens. We pass it `CJK_TOKENIZER`:
identical to the package's default on text without CJK characters (tested), and each CJK
ideograph, kana or hangul syllable is one token (character-level ROUGE, the usual choice for
Chinese). No stemming (the package's default, `use_stemmer=False`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from andesvl_jax.data.answers import gold_answers
from andesvl_jax.eval.metrics.base import Metric, Score, mean_of

# CJK unified ideographs (+ extension A, compatibility), hiragana/katakana, hangul syllables.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TOKEN = re.compile(f"[a-z0-9]+|[{_CJK}]")


class CharacterCJKTokenizer:
    """rouge-score's tokenizer (lower case, `[a-z0-9]+` runs) plus one token per CJK character.
    (The package's `tokenizers.Tokenizer` interface: a `tokenize(text)` method.)"""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())


CJK_TOKENIZER = CharacterCJKTokenizer()


@functools.cache
def _scorer():
    # Imported on first use: the rest of the metrics work where rouge-score is not installed.
    try:
        from rouge_score import rouge_scorer
    except ImportError as e:
        raise ImportError(
            "metric 'rouge' needs Google's rouge-score: pip install rouge-score==0.1.2"
        ) from e
    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], tokenizer=CJK_TOKENIZER)


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """{'rouge1': F, 'rougeL': F} of one prediction against one reference."""
    scores = _scorer().score(reference, prediction)  # rouge-score's order: (target, prediction)
    return {k: float(v.fmeasure) for k, v in scores.items()}


def rouge_1(prediction: str, reference: str) -> float:
    """ROUGE-1 F-measure (clipped unigram overlap) as rouge-score computes it."""
    return rouge_scores(prediction, reference)["rouge1"]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1, longest common token subsequence) as rouge-score computes it."""
    return rouge_scores(prediction, reference)["rougeL"]


def score_rouge(prediction: str, meta: Mapping[str, Any]) -> Score:
    """ROUGE-1 and ROUGE-L F (each the max over references); `score` is ROUGE-L."""
    per_ref = [rouge_scores(prediction, r) for r in gold_answers(meta, "metric 'rouge'")]
    r1 = max(s["rouge1"] for s in per_ref)
    rl = max(s["rougeL"] for s in per_ref)
    unparsable = not CJK_TOKENIZER.tokenize(prediction)
    return {"score": rl, "rouge1": r1, "rougeL": rl, "unparsable": unparsable}


ROUGE = Metric("rouge", score_rouge, mean_of("rouge1", "rougeL"))
