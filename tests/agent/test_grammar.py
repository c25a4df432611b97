"""Constrained decoding: whatever the logits, a finished constrained completion parses as a valid
call (or a text answer); the engine applies the same mask inside its compiled loop."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from andesvl_jax.agent.calls import FunctionCall, NoCall, format_call, parse_call
from andesvl_jax.agent.grammar import call_automaton
from andesvl_jax.agent.predict import AgentPredictor
from andesvl_jax.infer.constraints import accepts


def _walk(automaton, logits_rng, im_end, limit=80, temperature=1.0):
    """Sample a token sequence under the mask from random logits (host-side decode loop)."""
    state, out = automaton.start, []
    for _ in range(limit):
        allowed = automaton.table[state] >= 0
        logits = logits_rng.standard_normal(len(allowed)) * 3 / temperature
        token = int(np.argmax(np.where(allowed, logits, -np.inf)))
        out.append(token)
        state = int(automaton.table[state, token])
        if token == im_end:
            return out, True
    return out, False


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.2, 5.0))
def test_every_finished_constrained_sequence_is_a_valid_call(registry, agent_tokenizer, seed, temp):
    automaton = _automaton(registry, agent_tokenizer)
    im_end = agent_tokenizer.special_tokens.im_end
    ids, finished = _walk(automaton, np.random.default_rng(seed), im_end, temperature=temp)
    text = agent_tokenizer.decode(ids[:-1] if finished else ids)
    assert text.startswith("<nexa_")  # the first token is always a functional token
    if finished:
        call = parse_call(text, registry)  # raises on any invalid call
        assert isinstance(call, FunctionCall | NoCall)


_CACHE = {}


def _automaton(registry, tok):
    if "a" not in _CACHE:
        _CACHE["a"] = call_automaton(registry, tok)
    return _CACHE["a"]


def test_valid_calls_are_accepted_and_invalid_ones_rejected(registry, agent_tokenizer):
    automaton = _automaton(registry, agent_tokenizer)
    end = "<|im_end|>"
    good = [
        "<nexa_3>('mug', 9)<nexa_end>",
        "<nexa_1>('555-1234', 'on my way')<nexa_end>",
        "<nexa_6>('living room', 'rustic')<nexa_end>",
        "<nexa_none>抱歉，我只能使用手机上的应用。",
    ]
    bad = [
        "<nexa_3>('mug', 10)<nexa_end>",  # out of range
        "<nexa_3>('vase', 1)<nexa_end>",  # not in the enum
        "<nexa_1>('5a', 'call me')<nexa_end>",  # phone format
        "<nexa_2>('')<nexa_end>",  # empty string
        "<nexa_2>('" + "x" * 25 + "')<nexa_end>",  # over max_length
        "<nexa_none>text <nexa_2>",  # no call inside a text answer
        "mug",  # no functional token first
    ]
    for text in good:
        assert accepts(automaton, agent_tokenizer.encode(text + end)), text
    for text in bad:
        assert not accepts(automaton, agent_tokenizer.encode(text + end)), text


def test_engine_constrained_generation_always_parses(registry, agent_tokenizer, grown_model):
    predictor = AgentPredictor(grown_model, agent_tokenizer, registry, batch_size=4)
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    preds = predictor.predict(
        ["Buy 2 of these.", "帮我搜索这个。", "Help my pet.", "hi"], [image] * 4
    )
    for p in preds:  # a random model, but every call is well formed and in the schema
        assert p.error is None, p
        assert p.call is not None
        if isinstance(p.call, FunctionCall):
            assert format_call(p.call, registry) in p.text


def test_unbounded_integers_and_booleans(agent_tokenizer):
    from andesvl_jax.agent.functions import parse_functions

    reg = parse_functions(
        [
            {
                "name": "f",
                "description": "d",
                "arguments": [
                    {"name": "n", "type": "integer", "minimum": 0},
                    {"name": "b", "type": "boolean"},
                ],
            }
        ]
    )
    tok = agent_tokenizer  # <nexa_0> is a functional token of any registry's first function
    automaton = call_automaton(reg, tok)
    ok = lambda text: accepts(automaton, tok.encode(text + "<|im_end|>"))  # noqa: E731
    assert ok("<nexa_0>(12345, true)<nexa_end>") and ok("<nexa_0>(0, false)<nexa_end>")
    assert not ok("<nexa_0>(12a, true)<nexa_end>") and not ok("<nexa_0>(, true)<nexa_end>")
    assert not ok("<nexa_0>(1, maybe)<nexa_end>")
