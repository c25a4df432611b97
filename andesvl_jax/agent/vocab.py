"""Functional tokens in the vocabulary: N function tokens, `<nexa_none>` and `<nexa_end>` added to a
tokenizer, and the model's embedding (and untied LM head) grown in place to hold them.

Token ids: `<nexa_0>` .. `<nexa_{N-1}>`, `<nexa_none>`, `<nexa_end>` take the next free ids of the
tokenizer (its size, upwards). A model table that already has rows there (Qwen3 pads its 151 669
tokens to 151 936 rows) keeps its size and those rows are re-initialised; a smaller table grows.
Old rows are untouched, so every old token's logit is unchanged for any input.

Initialisation (Octopus v2): each function token's embedding is the mean embedding of its
description's tokens (`name: description`); `<nexa_none>` / `<nexa_end>` use NONE_DESCRIPTION /
END_DESCRIPTION. An untied LM head's new rows get the same vectors (`tie_head=True`) or stay as
drawn from the model's initialiser scale (`tie_head=False`).
"""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
from flax import nnx
from tokenizers import AddedToken, Tokenizer

from andesvl_jax.agent.calls import END_TOKEN, NONE_TOKEN, function_token
from andesvl_jax.agent.functions import FunctionRegistry
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.models.andesvl import AndesVL

NONE_DESCRIPTION = "No function fits the request: answer in plain text."
END_DESCRIPTION = "End of the function call."


class VocabularyError(ValueError):
    """Functional tokens that cannot be added to this tokenizer / model."""


def functional_tokens(registry: FunctionRegistry) -> list[str]:
    """The token strings, in id order: N function tokens, none, end."""
    return [function_token(i) for i in range(len(registry))] + [NONE_TOKEN, END_TOKEN]


def token_descriptions(registry: FunctionRegistry) -> list[str]:
    """The text whose mean embedding initialises each functional token (same order)."""
    return [f"{f.name}: {f.description}" for f in registry.functions] + [
        NONE_DESCRIPTION,
        END_DESCRIPTION,
    ]


def add_functional_tokens(tok: TextTokenizer, registry: FunctionRegistry) -> TextTokenizer:
    """A copy of `tok` with the functional tokens added as special tokens at its next free ids."""
    names = functional_tokens(registry)
    taken = {n: tok.token_id(n) for n in names if tok.token_id(n) is not None}
    if taken:
        raise VocabularyError(
            f"tokenizer {tok.name}: functional tokens already in the vocabulary: {taken} "
            "(grow a tokenizer without them)"
        )
    first = tok.vocab_size
    grown = Tokenizer.from_str(tok.tokenizer.to_str())
    grown.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in names])
    out = TextTokenizer(grown, name=f"{tok.name}+functional")
    ids = [out.token_id(n) for n in names]
    if ids != list(range(first, first + len(names))):
        raise VocabularyError(
            f"tokenizer {tok.name}: functional tokens got ids {ids}, expected {first}.. "
            "(the tokenizer's ids are not contiguous)"
        )
    return out


def functional_ids(tok: TextTokenizer, registry: FunctionRegistry) -> np.ndarray:
    """Ids of the functional tokens [N + 2] (function tokens, none, end) in `tok`."""
    ids = [tok.token_id(n) for n in functional_tokens(registry)]
    missing = [n for n, i in zip(functional_tokens(registry), ids, strict=True) if i is None]
    if missing:
        raise VocabularyError(f"tokenizer {tok.name} lacks functional tokens {missing[:3]}...")
    return np.asarray(ids, np.int32)


def with_characters(tok: TextTokenizer, chars: str) -> TextTokenizer:
    """A character-level tokenizer (BPE without merges, like the embedded one) with `chars` mapped
    onto its reserved filler ids (`<|reserved_i|>`, lowest first). Characters it already has are
    kept. A byte-level BPE (Qwen3) covers every character already: use it as it is."""
    spec = json.loads(tok.tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE" or model.get("merges"):
        raise VocabularyError(
            f"tokenizer {tok.name}: only a character-level vocabulary (BPE without merges) takes "
            "new characters; a real tokenizer (e.g. Qwen3's tokenizer.json) covers them already"
        )
    vocab = model["vocab"]
    new = sorted({c for c in chars if c not in vocab and c.strip()})
    reserved = sorted((i for t, i in vocab.items() if t.startswith("<|reserved_")), key=int)
    if len(new) > len(reserved):
        raise VocabularyError(
            f"tokenizer {tok.name}: {len(new)} new characters but only {len(reserved)} reserved ids"
        )
    by_id = {i: t for t, i in vocab.items()}
    for c, i in zip(new, reserved, strict=False):
        del vocab[by_id[i]]
        vocab[c] = i
    return TextTokenizer(Tokenizer.from_str(json.dumps(spec)), name=f"{tok.name}+{len(new)}chars")


def check_coverage(tok: TextTokenizer, texts, where: str = "text") -> None:
    """Raise VocabularyError naming the characters `tok` maps to its unknown token."""
    unk = tok.token_id("[UNK]")
    if unk is None:
        return
    missing = set()
    for text in texts:
        if unk in tok.encode(text).tolist():
            missing |= {c for c in text if unk in tok.encode(c).tolist()}
    if missing:
        raise VocabularyError(
            f"tokenizer {tok.name} does not cover {len(missing)} characters of the {where}: "
            f"{''.join(sorted(missing))[:60]!r} (extend it with agent.vocab.with_characters or use "
            "a tokenizer.json that covers them)"
        )


def description_vectors(embedding: np.ndarray, tok: TextTokenizer, texts: list[str]) -> np.ndarray:
    """Mean embedding row of each text's tokens: [len(texts), d]."""
    out = []
    for text in texts:
        ids = tok.encode(text)
        if not len(ids):
            raise VocabularyError(f"description {text!r} encodes to no tokens")
        out.append(np.asarray(embedding)[ids].mean(axis=0))
    return np.stack(out)


def grow_model(
    model: AndesVL,
    tok: TextTokenizer,
    registry: FunctionRegistry,
    *,
    tie_head: bool = True,
    seed: int = 0,
) -> AndesVL:
    """A model whose vocabulary holds the functional tokens of `tok` (from `add_functional_tokens`),
    their rows initialised from the mean description embeddings. `model` is left as it is."""
    ids = functional_ids(tok, registry)
    cfg = model.cfg
    rows = max(cfg.text.vocab_size, int(ids.max()) + 1)
    embedding = np.asarray(model.llm.embed.embedding[...])
    if int(ids.min()) > cfg.text.vocab_size:
        raise VocabularyError(
            f"the model has {cfg.text.vocab_size} vocabulary rows but the tokenizer {tok.name} "
            f"already uses ids up to {int(ids.min()) - 1}: not this model's tokenizer"
        )
    vectors = description_vectors(embedding, tok, token_descriptions(registry))
    d = embedding.shape[1]
    grown_embedding = np.concatenate(
        [embedding, np.zeros((rows - embedding.shape[0], d), embedding.dtype)]
    )
    grown_embedding[ids] = vectors
    new_cfg = cfg.replace(text=dataclasses.replace(cfg.text, vocab_size=rows))
    pure = nnx.state(model).to_pure_dict()
    pure["llm"]["embed"]["embedding"] = jnp.asarray(grown_embedding)
    if model.llm.lm_head is not None:
        kernel = np.asarray(model.llm.lm_head.kernel[...])  # [d, vocab]
        rng = np.random.default_rng(seed)
        extra = (rng.standard_normal((d, rows - kernel.shape[1])) * d**-0.5).astype(kernel.dtype)
        kernel = np.concatenate([kernel, extra], axis=1)
        if tie_head:
            kernel[:, ids] = vectors.T
        pure["llm"]["lm_head"]["kernel"] = jnp.asarray(kernel)
    abstract = nnx.eval_shape(lambda: AndesVL(new_cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)
