"""Text tokenizer: any HF `tokenizer.json` (e.g. Qwen3's) via `tokenizers`, or the embedded one.

The embedded default (`assets/tiny_tokenizer.json`, rebuilt by `build_default_tokenizer`) is the
character-level vocabulary of the official tiny fixtures, so demo and tests run offline and match
the `tiny` model preset (vocab 512):
  id 0 = [UNK]; "\n" = 10; printable ASCII c = ord(c) (32..126);
  127.. = CJK numerals (for the two-script OCR task);
  480..505 = the 26 Qwen3/AndesVL special tokens at official id - 151163 (their official order);
  every other id is a reserved filler.
Special-token ids are always looked up by name (`special_tokens()`), never hard-coded.
"""

from __future__ import annotations

import pathlib
from functools import cached_property

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models

from andesvl_jax.config import SpecialTokens

DEFAULT_TOKENIZER_PATH = (
    pathlib.Path(__file__).resolve().parents[1] / "assets" / "tiny_tokenizer.json"
)
DEFAULT_VOCAB_SIZE = 512
TINY_SPECIAL_OFFSET = -151163
CJK_NUMERALS = "零一二三四五六七八九十百千万"

# Official special tokens from <|endoftext|> (151643) to </think> (151668), in id order. AndesVL
# renames Qwen's <|vision_start|>/<|vision_end|> to <img>/</img>.
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<img>",
    "</img>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
FIRST_SPECIAL_ID = 151643

# SpecialTokens field -> token strings to try, first match wins (covers Qwen3 and AndesVL naming).
SPECIAL_TOKEN_NAMES: dict[str, tuple[str, ...]] = {
    "pad": ("<|endoftext|>",),
    "im_start": ("<|im_start|>",),
    "im_end": ("<|im_end|>",),
    "img_start": ("<img>", "<|vision_start|>"),
    "img_end": ("</img>", "<|vision_end|>"),
    "image_pad": ("<|vision_pad|>",),
    "think_start": ("<think>",),
    "think_end": ("</think>",),
    "box_start": ("<|box_start|>",),
    "box_end": ("<|box_end|>",),
    "ref_start": ("<|object_ref_start|>",),
    "ref_end": ("<|object_ref_end|>",),
}


def default_vocab() -> dict[str, int]:
    """token string -> id of the embedded character-level vocabulary (512 ids)."""
    vocab: dict[str, int] = {"[UNK]": 0, "\n": 10}
    vocab.update({chr(c): c for c in range(32, 127)})
    vocab.update({ch: 127 + i for i, ch in enumerate(CJK_NUMERALS)})
    first = FIRST_SPECIAL_ID + TINY_SPECIAL_OFFSET
    vocab.update({tok: first + i for i, tok in enumerate(QWEN_SPECIALS)})
    used = set(vocab.values())
    vocab.update({f"<|reserved_{i}|>": i for i in range(DEFAULT_VOCAB_SIZE) if i not in used})
    return vocab


def build_default_tokenizer() -> Tokenizer:
    """The embedded tokenizer, built from code (BPE without merges = one token per character)."""
    tok = Tokenizer(models.BPE(vocab=default_vocab(), merges=[], unk_token="[UNK]"))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    return tok


MAX_TOKENIZER_BYTES = 256 * 2**20  # Qwen3's tokenizer.json is 11 MB


class TokenizerError(ValueError):
    """A tokenizer file cannot be used; the message names the file and what is wrong."""


class TextTokenizer:
    """Thin wrapper: encode/decode to int32 arrays and special-token ids by name."""

    def __init__(self, tokenizer: Tokenizer, name: str = "tokenizer"):
        self.tokenizer, self.name = tokenizer, name

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> TextTokenizer:
        """Load a HF `tokenizer.json` (a file, or a directory containing one)."""
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        size = path.stat().st_size
        if size > MAX_TOKENIZER_BYTES:
            raise TokenizerError(f"{path}: {size} bytes; a tokenizer.json is at most {MAX_TOKENIZER_BYTES}")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except BaseException as e:  # noqa: BLE001 - the Rust parser raises Exception or panics
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            raise TokenizerError(
                f"{path}: not a readable HF tokenizer.json: {type(e).__name__}: {str(e)[:300]}"
            ) from None
        return cls(tokenizer, name=str(path))

    @classmethod
    def default(cls) -> TextTokenizer:
        """The embedded character-level tokenizer (tiny preset)."""
        return cls.from_file(DEFAULT_TOKENIZER_PATH)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        """text -> ids [n] int32.

        Special-token strings in the text become their ids; nothing is added.
        """
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, np.int32)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    @cached_property
    def special_tokens(self) -> SpecialTokens:
        """The `SpecialTokens` of this vocabulary, looked up by name."""
        ids = {}
        for field, names in SPECIAL_TOKEN_NAMES.items():
            found = [i for i in map(self.token_id, names) if i is not None]
            if not found:
                raise TokenizerError(
                    f"tokenizer {self.name} lacks special token {names[0]!r} ({field})"
                )
            ids[field] = found[0]
        return SpecialTokens(**ids)

    def __getstate__(self):  # picklable for multiprocess prefetch
        return {"json": self.tokenizer.to_str(), "name": self.name}

    def __setstate__(self, state):
        self.tokenizer, self.name = Tokenizer.from_str(state["json"]), state["name"]


if __name__ == "__main__":  # python -m andesvl_jax.data.tokenizer: rewrite the shipped asset
    DEFAULT_TOKENIZER_PATH.parent.mkdir(parents=True, exist_ok=True)
    build_default_tokenizer().save(str(DEFAULT_TOKENIZER_PATH), pretty=False)
    print(f"wrote {DEFAULT_TOKENIZER_PATH}")
