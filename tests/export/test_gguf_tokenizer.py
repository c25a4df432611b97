"""GGUF tokenizer export: llama.cpp tokenizes like our tokenizer (the real Qwen3 BPE, 46 mixed
English/Chinese/emoji/code strings), the metadata carries the special ids and the chat template, a
tokenizer llama.cpp cannot express becomes `none`, and an unknown pre-tokenizer is an error."""

import dataclasses

import gguf
import pytest
from andesvl_jax.export.gguf import write_llm
from andesvl_jax.export.gguf_tokenizer import CHAT_TEMPLATE, TokenizerExportError, gguf_vocab
from flax import nnx
from gguf_testing import (
    qwen_tokenizer,
    read_gguf_metadata,
    reference_tokenizations,
    require_llama_cpp,
)
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from andesvl_jax.config import TINY_TEXT
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.models.qwen3 import Qwen3

QWEN_VOCAB = 151936


@pytest.fixture(scope="module")
def qwen_gguf(tmp_path_factory):
    """A one-layer Qwen3 with the full Qwen3 vocabulary and tokenizer, as GGUF."""
    text = dataclasses.replace(TINY_TEXT, vocab_size=QWEN_VOCAB, hidden_size=32, num_layers=1)
    model = Qwen3(text, rngs=nnx.Rngs(0), scan=False)
    path = tmp_path_factory.mktemp("tok") / "model.gguf"
    write_llm(model, qwen_tokenizer(), path, quant="f16")
    return path


def test_our_tokenizer_matches_the_hf_references():
    tok = qwen_tokenizer()
    for text, ids in reference_tokenizations():
        assert tok.encode(text).tolist() == ids, text


def test_llama_cpp_tokenizes_like_ours(qwen_gguf):
    require_llama_cpp()
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    runtime = LlamaCpp(qwen_gguf, vocab_only=True)
    assert runtime.n_vocab == QWEN_VOCAB
    tok = qwen_tokenizer()
    for text, ids in reference_tokenizations():
        assert runtime.tokenize(text) == tok.encode(text).tolist() == ids, text
    chat = "<|im_start|>user\n你好 🦙<|im_end|>\n<|im_start|>assistant\n<think>"
    assert runtime.tokenize(chat) == tok.encode(chat).tolist()


def test_metadata_has_special_ids_and_chat_template(qwen_gguf):
    meta = read_gguf_metadata(qwen_gguf)
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.ggml.eos_token_id"] == 151645
    assert meta["tokenizer.ggml.padding_token_id"] == 151643
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    types = meta["tokenizer.ggml.token_type"]
    assert types[151644] == gguf.TokenType.CONTROL and types[151700] == gguf.TokenType.UNUSED
    assert meta["qwen3.vocab_size"] == QWEN_VOCAB


def test_character_level_tokenizer_becomes_none():
    vocab = gguf_vocab(TextTokenizer.default(), 512)
    assert vocab.model == "none" and vocab.tokens == []


def test_unknown_pre_tokenizer_is_an_error_naming_it():
    tok = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s+"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    with pytest.raises(TokenizerExportError, match=r"odd.json: pre_tokenizer split regex"):
        gguf_vocab(TextTokenizer(tok, name="odd.json"), 8)
