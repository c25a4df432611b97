"""Calls as text: format -> parse round trip (property test), schema and parse errors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andesvl_jax.agent.calls import (
    CallParseError,
    CallSchemaError,
    FunctionCall,
    NoCall,
    format_call,
    parse_call,
)
from andesvl_jax.agent.functions import FORMATS, phone_functions

REGISTRY = phone_functions()
TEXT_CHARS = st.characters(blacklist_characters="'\n\\", blacklist_categories=("Cs", "Cc"))


@st.composite
def calls(draw):
    f = draw(st.sampled_from(REGISTRY.functions))
    args = {}
    for a in f.arguments:
        if a.enum:
            args[a.name] = draw(st.sampled_from(a.enum))
        elif a.type == "integer":
            args[a.name] = draw(st.integers(a.minimum, a.maximum))
        elif a.format:
            args[a.name] = draw(
                st.text(st.sampled_from(FORMATS[a.format]), min_size=1, max_size=a.max_length)
            )
        else:
            args[a.name] = draw(st.text(TEXT_CHARS, min_size=1, max_size=a.max_length))
    return FunctionCall(f.name, args)


@settings(max_examples=200, deadline=None)
@given(calls(), st.sampled_from(["token", "text"]))
def test_format_then_parse_is_the_identity(call, style):
    assert parse_call(format_call(call, REGISTRY, style), REGISTRY, style) == call


def test_token_and_text_forms():
    call = FunctionCall("amazon_shopping", {"product": "mug", "quantity": 2})
    assert format_call(call, REGISTRY) == "<nexa_3>('mug', 2)<nexa_end>"
    assert format_call(call, REGISTRY, "text") == "amazon_shopping('mug', 2)"
    assert parse_call("<nexa_none>It is red.", REGISTRY) == NoCall("It is red.")
    assert parse_call("It is red.", REGISTRY, "text") == NoCall("It is red.")


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("<nexa_3>('vase', 2)<nexa_end>", CallSchemaError, "not one of"),
        ("<nexa_3>('mug', 12)<nexa_end>", CallSchemaError, "outside"),
        ("<nexa_3>('mug')<nexa_end>", CallSchemaError, "1 arguments, expected 2"),
        ("<nexa_1>('12ab', 'call me')<nexa_end>", CallSchemaError, "holds characters"),
        ("<nexa_3>('mug', 2)", CallParseError, "not a call"),
        ("<nexa_3>('mug',2)<nexa_end>", CallParseError, "', '"),
        ("<nexa_42>('mug', 2)<nexa_end>", CallParseError, "only 10 functions"),
        ("amazon_shopping('mug', two)", CallParseError, "bad argument"),
    ],
)
def test_bad_calls_are_reported(text, error, message):
    style = "text" if not text.startswith("<") else "token"
    with pytest.raises(error, match=message):
        parse_call(text, REGISTRY, style)


def test_formatting_an_invalid_call_fails():
    with pytest.raises(CallSchemaError):
        format_call(FunctionCall("pet_care", {"pet": "lion", "problem": "fleas"}), REGISTRY)
