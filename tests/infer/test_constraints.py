"""The constraint mask inside the compiled decode loop: a chain automaton forces its tokens, greedy
or sampled, and a malformed table is refused before anything compiles."""

import numpy as np
import pytest
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.infer.constraints import TokenAutomaton
from andesvl_jax.infer.generate import generate
from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams
from andesvl_jax.models.andesvl import AndesVL


def _chain(ids, vocab, states=8):
    table = np.full((states, vocab), -1, np.int32)
    for k, t in enumerate(ids):
        table[k, t] = k + 1
    table[len(ids) :] = np.arange(len(ids), states).clip(max=states - 1)[:, None]
    return TokenAutomaton(table, 0)


def test_chain_constraint_forces_its_tokens():
    model = AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0))
    prompts = np.random.default_rng(0).integers(32, 127, (2, 5)).astype(np.int32)
    target = [70, 71, 72, 73]
    for params in (SamplingParams(), SamplingParams(temperature=1.0, seed=3)):
        out = generate(
            model,
            prompts,
            np.array([5, 3], np.int32),
            None,
            SamplingBatch.of([params] * 2),
            max_new_tokens=4,
            stop_tokens=(),
            pad_id=0,
            constraint=_chain(target, 512),
        )
        assert out.tokens.tolist() == [target, target]


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="does not match the vocabulary"):
        _chain([1], 100).validate(512)
    dead = _chain([1], 512)
    dead.table[3] = -1
    with pytest.raises(ValueError, match="allow no token"):
        dead.validate(512)
