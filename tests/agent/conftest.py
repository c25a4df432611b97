"""Shared agent fixtures: the phone registry, the grown embedded tokenizer, a tiny grown model."""

import pytest
from flax import nnx

from andesvl_jax.agent.corpus import corpus_characters
from andesvl_jax.agent.functions import phone_functions
from andesvl_jax.agent.vocab import add_functional_tokens, grow_model, with_characters
from andesvl_jax.config import get_preset
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.models.andesvl import AndesVL


@pytest.fixture(scope="session")
def registry():
    return phone_functions()


@pytest.fixture(scope="session")
def agent_tokenizer(registry):
    tok = with_characters(TextTokenizer.default(), corpus_characters())
    return add_functional_tokens(tok, registry)


@pytest.fixture(scope="session")
def grown_model(registry, agent_tokenizer):
    base = AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0))
    return grow_model(base, agent_tokenizer, registry)
