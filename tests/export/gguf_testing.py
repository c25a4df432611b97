"""Shared helpers of the GGUF export tests: the real Qwen2/Qwen3 tokenizer rebuilt from the vocab-only
GGUF fixture, its 46 reference tokenizations, and a skip when llama-cpp-python is missing."""

from __future__ import annotations

import functools
import pathlib
import struct

import numpy as np
import pytest
from andesvl_jax.export.gguf_tokenizer import PRE_TOKENIZERS
from flax import nnx
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from andesvl_jax.config import get_preset
from andesvl_jax.data.tokenizer import FIRST_SPECIAL_ID, QWEN_SPECIALS, TextTokenizer
from andesvl_jax.models.andesvl import AndesVL

VOCAB_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "qwen2_vocab"
VOCAB_GGUF = VOCAB_DIR / "ggml-vocab-qwen2.gguf"


# GGUF value type -> struct format (scalars); 8 = string, 9 = array
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}


def read_gguf_metadata(path) -> dict:
    """The key/value metadata of a GGUF file (a plain struct walk: gguf.GGUFReader takes ~20 s
    on a 151 936-token vocabulary)."""
    data = pathlib.Path(path).read_bytes()
    at = 8  # magic + version
    _, n_kv = struct.unpack_from("<QQ", data, at)
    at += 16

    def string():
        nonlocal at
        (n,) = struct.unpack_from("<Q", data, at)
        at += 8 + n
        return data[at - n : at].decode("utf-8")

    def value(kind):
        nonlocal at
        if kind == 8:
            return string()
        if kind == 9:
            inner, count = struct.unpack_from("<IQ", data, at)
            at += 12
            return [value(inner) for _ in range(count)]
        fmt = "<" + _SCALARS[kind]
        (v,) = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return v

    out = {}
    for _ in range(n_kv):
        key = string()
        (kind,) = struct.unpack_from("<I", data, at)
        at += 4
        out[key] = value(kind)
    return out


def require_llama_cpp():
    return pytest.importorskip("llama_cpp", reason="pip install llama-cpp-python==0.3.36")


@functools.cache
def qwen_tokenizer() -> TextTokenizer:
    """Qwen3's byte-level BPE (151 643 regular tokens + the 26 AndesVL specials) as an HF tokenizer."""
    if not VOCAB_GGUF.is_file():
        pytest.skip(f"missing fixture {VOCAB_GGUF}")
    meta = read_gguf_metadata(VOCAB_GGUF)
    tokens = meta["tokenizer.ggml.tokens"][:FIRST_SPECIAL_ID]
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRE_TOKENIZERS["qwen2"]), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in QWEN_SPECIALS])
    return TextTokenizer(tok, name=str(VOCAB_GGUF))


def reference_tokenizations() -> list[tuple[str, list[int]]]:
    """The fixture's 46 strings and the ids the Hugging Face Qwen2 tokenizer gives them."""
    texts = (VOCAB_DIR / "ggml-vocab-qwen2.gguf.inp").read_text(encoding="utf-8")
    texts = texts.split("\n__ggml_vocab_test__\n")[:-1]  # the file ends with a separator
    ids = (VOCAB_DIR / "ggml-vocab-qwen2.gguf.out").read_text(encoding="utf-8").split("\n")[:-1]
    pairs = [(t, [int(i) for i in line.split()]) for t, line in zip(texts, ids, strict=True)]
    assert len(pairs) == 46
    return pairs


def tiny_model(seed: int = 0) -> AndesVL:
    """The tiny preset with separate layers (what deploy and export write)."""
    return AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(seed))


def token_batch(seed: int, batch: int = 2, length: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 500, (batch, length)).astype(np.int32)
