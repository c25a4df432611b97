"""Requests in, calls out: the Engine with the call grammar as its constraint, parsed and checked.

`AgentPredictor.predict` returns one `Prediction` per request: the parsed FunctionCall / NoCall, or
the parse / schema error (an unconstrained or text-style model can write an invalid call; it is
reported, never executed), with the tokens generated.
"""

from __future__ import annotations

import dataclasses
import pathlib

from andesvl_jax.agent.calls import (
    CallParseError,
    CallSchemaError,
    FunctionCall,
    NoCall,
    function_token,
    parse_call,
)
from andesvl_jax.agent.functions import FunctionRegistry
from andesvl_jax.agent.grammar import call_automaton
from andesvl_jax.agent.vocab import VocabularyError, functional_ids
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.infer.engine import Engine

MAX_NEW_TOKENS = 48


class ImageError(ValueError):
    """An input image that cannot be read or decoded."""


def load_image(path: str | pathlib.Path):
    """The RGB image at `path`, decoded now so a bad file fails here with its name."""
    from PIL import Image, UnidentifiedImageError

    path = pathlib.Path(path)
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise ImageError(f"image {path} cannot be decoded: {type(e).__name__}: {e}") from e


@dataclasses.dataclass
class Prediction:
    call: FunctionCall | NoCall | None  # None: the text was not a valid call
    text: str
    tokens: int  # generated, the end-of-turn token included
    error: str | None = None  # "parse: ..." or "schema: ..."

    def to_json(self) -> dict:
        out = self.call.to_json() if self.call is not None else {"function": None}
        return {**out, "raw": self.text, "tokens": self.tokens, "error": self.error}


def parse_prediction(text: str, tokens: int, registry: FunctionRegistry, style: str) -> Prediction:
    try:
        return Prediction(parse_call(text, registry, style), text, tokens)
    except CallSchemaError as e:
        return Prediction(None, text, tokens, f"schema: {e}")
    except CallParseError as e:
        return Prediction(None, text, tokens, f"parse: {e}")


def check_functional_tokens(tokenizer, registry: FunctionRegistry) -> None:
    """The tokenizer holds exactly this registry's functional tokens (VocabularyError if not)."""
    functional_ids(tokenizer, registry)
    extra = tokenizer.token_id(function_token(len(registry)))
    if extra is not None:
        raise VocabularyError(
            f"the model's tokenizer has more function tokens than the {len(registry)} functions of "
            f"{registry.source} (it was grown with another function file)"
        )


class AgentPredictor:
    """model + tokenizer (with functional tokens for style 'token') + registry -> predictions."""

    def __init__(
        self,
        model,
        tokenizer,
        registry: FunctionRegistry,
        *,
        style: str = "token",
        constrained: bool = True,
        batch_size: int = 8,
        image_max_size: int = 112,
        system: str | None = None,
    ):
        self.registry, self.style, self.system = registry, style, system
        self.engine = Engine(
            model,
            tokenizer,
            image_max_size=image_max_size,
            max_prompt_tokens=2048,
            max_patches=256,
            batch_size=batch_size,
        )
        if style == "token":
            check_functional_tokens(tokenizer, registry)
        self.constraint = None
        if constrained:
            if style != "token":
                raise ValueError("constrained decoding needs the functional-token style")
            self.constraint = call_automaton(registry, tokenizer)

    def samples(self, requests, images) -> list[Sample]:
        out = []
        for request, image in zip(requests, images, strict=True):
            messages = [Message("system", self.system)] if self.system else []
            messages.append(Message("user", f"<image>\n{request}"))
            out.append(Sample(messages, [image], origin="agent"))
        return out

    def predict_samples(self, samples) -> list[Prediction]:
        done = self.engine.generate(
            samples, max_new_tokens=MAX_NEW_TOKENS, constraint=self.constraint
        )
        return [parse_prediction(c.text, len(c.token_ids), self.registry, self.style) for c in done]

    def predict(self, requests, images) -> list[Prediction]:
        return self.predict_samples(self.samples(requests, images))
