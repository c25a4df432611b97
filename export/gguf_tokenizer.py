"""Our tokenizer -> GGUF tokenizer metadata (llama.cpp `tokenizer.ggml.*`).

A byte-level BPE `tokenizer.json` (Qwen2/Qwen3) becomes llama.cpp's `gpt2` vocabulary: every token
string in id order, its type (normal / control for special added tokens / user-defined for other
added tokens / unused for ids past the tokenizer's size), the merges, and the pre-tokenizer name
llama.cpp recognises by its split regex (PRE_TOKENIZERS). A tokenizer llama.cpp cannot express (the
embedded character-level one of the tiny models: no byte-level pre-tokenizer, no merges) is written
as `tokenizer.ggml.model = none`: the runtime then takes token ids, as `export verify` feeds it.

The chat template (ChatML, AndesVL's image markers) and the special token ids go in the metadata.
"""

from __future__ import annotations

import dataclasses
import json

import gguf

from andesvl_jax.data.tokenizer import TextTokenizer

# llama.cpp `tokenizer.ggml.pre` name -> the split regex of the HF pre-tokenizer it implements
PRE_TOKENIZERS = {
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}

# ChatML as our data/chat.py writes it (a generation prompt may open a think block).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking -%}{{- '<think>\n' -}}{%- endif -%}"
    "{%- endif -%}"
)


class TokenizerExportError(ValueError):
    """The tokenizer cannot be written in a form llama.cpp reads; the message names the field."""


@dataclasses.dataclass(frozen=True)
class GGUFVocab:
    model: str  # 'gpt2' | 'none'
    pre: str | None
    tokens: list[str]
    types: list[int]
    merges: list[str]


def _walk(node) -> list[dict]:
    """The flat list of a tokenizer.json pre-tokenizer (a Sequence or a single one)."""
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for sub in node.get("pretokenizers", []) for p in _walk(sub)]
    return [node]


def _pre_name(spec: dict, where: str) -> str:
    splits = [p for p in _walk(spec.get("pre_tokenizer")) if p.get("type") == "Split"]
    patterns = [p.get("pattern", {}).get("Regex") for p in splits]
    for name, regex in PRE_TOKENIZERS.items():
        if patterns == [regex]:
            return name
    raise TokenizerExportError(
        f"{where}: pre_tokenizer split regex {patterns!r} is none llama.cpp implements "
        f"(known: {sorted(PRE_TOKENIZERS)})"
    )


def _merges(spec: dict) -> list[str]:
    # tokenizers >= 0.20 writes merges as [left, right] pairs; older files as "left right"
    return [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]


def gguf_vocab(tokenizer: TextTokenizer, vocab_size: int) -> GGUFVocab:
    """The GGUF vocabulary of `tokenizer` for a model with `vocab_size` embedding rows."""
    spec = json.loads(tokenizer.tokenizer.to_str())
    byte_level = any(p.get("type") == "ByteLevel" for p in _walk(spec.get("pre_tokenizer")))
    if spec["model"].get("type") != "BPE" or not byte_level:
        return GGUFVocab("none", None, [], [], [])
    merges = _merges(spec)
    if not merges:
        raise TokenizerExportError(f"{tokenizer.name}: a byte-level BPE without merges")
    pre = _pre_name(spec, tokenizer.name)
    by_id = {i: t for t, i in tokenizer.tokenizer.get_vocab(with_added_tokens=True).items()}
    if max(by_id) >= vocab_size:
        raise TokenizerExportError(
            f"{tokenizer.name}: token id {max(by_id)} does not fit the model's vocab_size "
            f"{vocab_size}"
        )
    added = tokenizer.tokenizer.get_added_tokens_decoder()
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(
                gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
            )
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return GGUFVocab("gpt2", pre, tokens, [int(t) for t in types], merges)


def add_tokenizer(
    writer: gguf.GGUFWriter,
    tokenizer: TextTokenizer | None,
    vocab_size: int,
    renamed: dict[int, str] | None = None,
):
    """Write the tokenizer metadata; returns the GGUFVocab written. `renamed`: token id -> the
    string llama.cpp should know it by (libmtmd's image markers for our <img> / </img>)."""
    vocab = gguf_vocab(tokenizer, vocab_size) if tokenizer else GGUFVocab("none", None, [], [], [])
    writer.add_vocab_size(vocab_size)
    writer.add_tokenizer_model(vocab.model)
    if vocab.model == "none":
        return vocab
    for i, text in (renamed or {}).items():
        vocab.tokens[i] = text
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    special = tokenizer.special_tokens
    writer.add_bos_token_id(special.pad)
    writer.add_eos_token_id(special.im_end)
    writer.add_eot_token_id(special.im_end)
    writer.add_pad_token_id(special.pad)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    return vocab
