"""Vocabulary growth: ids, collisions, old logits unchanged, description-mean initialisation."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.agent.corpus import corpus_characters
from andesvl_jax.agent.vocab import (
    VocabularyError,
    add_functional_tokens,
    check_coverage,
    functional_ids,
    grow_model,
    token_descriptions,
    with_characters,
)
from andesvl_jax.config import get_preset
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.models.andesvl import AndesVL


def test_functional_tokens_take_the_next_ids(registry, agent_tokenizer):
    ids = functional_ids(agent_tokenizer, registry)
    assert ids.tolist() == list(range(512, 512 + len(registry) + 2))
    assert agent_tokenizer.encode("<nexa_3>(").tolist()[0] == 515


def test_tokens_already_in_the_vocabulary_are_refused(registry, agent_tokenizer):
    with pytest.raises(VocabularyError, match="already in the vocabulary"):
        add_functional_tokens(agent_tokenizer, registry)


def test_embedded_tokenizer_gains_the_chinese_characters():
    tok = TextTokenizer.default()
    with pytest.raises(VocabularyError, match="does not cover"):
        check_coverage(tok, ["给我讲个笑话"])
    extended = with_characters(tok, corpus_characters())
    check_coverage(extended, [corpus_characters()])
    assert extended.vocab_size == tok.vocab_size  # reserved ids reused, nothing grows
    assert extended.decode(extended.encode("给alice发邮件")) == "给alice发邮件"
    assert extended.encode("count 3").tolist() == tok.encode("count 3").tolist()


def _logits(model, ids):
    out, _ = model(jnp.asarray(ids), None)
    return np.asarray(out)


def _tiny(**text):
    cfg = get_preset("tiny", scan_layers=False)
    return AndesVL(cfg.replace(text=dataclasses.replace(cfg.text, **text)), rngs=nnx.Rngs(1))


@pytest.mark.parametrize("tied", [True, False])
def test_growth_keeps_old_logits_and_initialises_from_descriptions(registry, agent_tokenizer, tied):
    base = _tiny(tie_embeddings=tied)
    grown = grow_model(base, agent_tokenizer, registry)
    assert grown.cfg.text.vocab_size == 524
    ids = np.random.default_rng(0).integers(0, 512, (2, 12))
    # a wider [d, v] matmul may block differently on CPU: equal to float32 rounding
    np.testing.assert_allclose(_logits(grown, ids)[..., :512], _logits(base, ids), atol=1e-5)
    table = np.asarray(base.llm.embed.embedding[...])
    new = np.asarray(grown.llm.embed.embedding[...])[512:]
    for row, text in zip(new, token_descriptions(registry), strict=True):
        np.testing.assert_allclose(row, table[agent_tokenizer.encode(text)].mean(0), rtol=1e-6)
    if not tied:
        head = np.asarray(grown.llm.lm_head.kernel[...])
        np.testing.assert_allclose(head[:, 512:], new.T, rtol=1e-6)


def test_padding_rows_are_reused_not_grown(registry, agent_tokenizer):
    base = _tiny(vocab_size=600)
    grown = grow_model(base, agent_tokenizer, registry)
    assert grown.cfg.text.vocab_size == 600
    old = np.asarray(base.llm.embed.embedding[...])
    new = np.asarray(grown.llm.embed.embedding[...])
    np.testing.assert_array_equal(new[:512], old[:512])
    np.testing.assert_array_equal(new[524:], old[524:])


def test_a_model_smaller_than_the_tokenizer_is_refused(registry, agent_tokenizer):
    with pytest.raises(VocabularyError, match="not this model's tokenizer"):
        grow_model(_tiny(vocab_size=256), agent_tokenizer, registry)
