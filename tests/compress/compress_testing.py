"""Shared helpers of the compression tests: tiny models, token batches, jitted greedy decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.models.andesvl import AndesVL


def tiny_model(scan: bool = False, seed: int = 0, **overrides) -> AndesVL:
    return AndesVL(get_preset("tiny", scan_layers=scan, **overrides), rngs=nnx.Rngs(seed))


def token_batch(seed: int, batch: int = 2, length: int = 16) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, length), 0, 500)


def jitted_logits(model):
    """ids [b, t] -> float32 logits, compiled once for the model's structure."""
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda st, ids: nnx.merge(graphdef, st)(ids)[0])
    return lambda ids: fn(state, ids)


def greedy(
    model, prompt: np.ndarray, steps: int, jit: bool = False
) -> tuple[list[int], np.ndarray]:
    """Greedy continuation of prompt [p] by full causal forwards over a fixed-length buffer
    (positions after the cursor cannot affect it). Returns (tokens, logits at each step, then
    the logits of every position of the final sequence). jit=False runs op by op (separate
    layers: every float op outside the linears is the same computation in any two models)."""
    logits_fn = jitted_logits(model) if jit else (lambda ids: model(ids)[0])
    p = len(prompt)
    ids = np.zeros((1, p + steps), np.int32)
    ids[0, :p] = prompt
    tokens, rows = [], []
    for i in range(steps):
        row = np.asarray(logits_fn(jnp.asarray(ids)))[0, p + i - 1]
        tok = int(row.argmax())
        tokens.append(tok)
        rows.append(row)
        ids[0, p + i] = tok
    rows.extend(np.asarray(logits_fn(jnp.asarray(ids)))[0])
    return tokens, np.stack(rows)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
