"""Teacher-forced answer metrics of compression (eval/quant_metrics.py) on the tiny model."""

import math

import numpy as np
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.eval.quant_metrics import (
    answer_predictions,
    perplexity,
    top1_consistency,
    with_answers,
)
from andesvl_jax.models.andesvl import AndesVL

SHAPES = dict(image_max_size=84, max_tokens=128, max_patches=128)


def samples(n=5):
    source = SyntheticSource({"count": 1.0, "ocr_digits": 1.0}, size=n, seed=3, split="eval",
                             ctx=TaskContext(56, 84))  # fmt: skip
    return [source[i] for i in range(n)]


def test_consistency_perplexity_and_answer_replacement():
    tok = TextTokenizer.default()
    model = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0))
    other = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(1))
    qs = samples()
    a = answer_predictions(model, tok, qs, rows=4, **SHAPES)  # 5 samples: a padded second batch
    assert len(a.argmax) == 5 and all(
        len(x) == len(tok.encode(q.answer)) + 1 for x, q in zip(a.argmax, qs, strict=True)
    )
    assert top1_consistency(a, a) == {"top1_consistency": 1.0, "positions": a.tokens}
    b = answer_predictions(other, tok, qs, rows=4, **SHAPES)
    c = top1_consistency(a, b)["top1_consistency"]
    same = sum(int(np.sum(x == y)) for x, y in zip(a.argmax, b.argmax, strict=True))
    assert c == same / a.tokens < 1.0
    ppl = perplexity(a)
    assert math.isclose(ppl["perplexity"], math.exp(-np.mean(np.concatenate(a.logprob))))
    assert ppl["tokens"] == a.tokens
    replaced = with_answers(qs, ["7"] * 5)
    assert [s.answer for s in replaced] == ["7"] * 5 and replaced[0].prompt == qs[0].prompt
