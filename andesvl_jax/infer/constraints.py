"""Constrained decoding: a token automaton the decode loop applies as an allowed-token mask.

A `TokenAutomaton` is a dense table [states, vocab] of next states (-1: the token is not allowed in
that state) and a start state. Each row of a batch carries its state; before a token is sampled the
logits of disallowed tokens become -inf (`mask_logits`), after it the state moves on (`advance`).
Whatever grammar builds the table (agent/grammar.py compiles function-call schemas), sampling and
greedy decoding can then only emit sequences the automaton accepts. The table is dense: states x
vocab int32 (a few MB for a 512-token vocabulary; a 151k vocabulary needs a sparse form).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class TokenAutomaton(NamedTuple):
    table: np.ndarray  # [states, vocab] int32: next state, -1 = not allowed
    start: int

    def validate(self, vocab_size: int) -> TokenAutomaton:
        if self.table.ndim != 2 or self.table.shape[1] != vocab_size:
            raise ValueError(
                f"constraint table {self.table.shape} does not match the vocabulary ({vocab_size})"
            )
        if not 0 <= self.start < self.table.shape[0]:
            raise ValueError(f"constraint start state {self.start} out of range")
        dead = np.flatnonzero((self.table < 0).all(axis=1))
        if len(dead):
            raise ValueError(f"constraint states {dead[:5].tolist()} allow no token")
        return self


def mask_logits(logits: jax.Array, table: jax.Array, states: jax.Array) -> jax.Array:
    """logits [b, v] with tokens the rows' states [b] do not allow set to -inf."""
    return jnp.where(table[states] >= 0, logits, -jnp.inf)


def advance(table: jax.Array, states: jax.Array, tokens: jax.Array, done: jax.Array) -> jax.Array:
    """The rows' next states [b] after emitting tokens [b]; finished rows keep theirs."""
    return jnp.where(done, states, table[states, tokens])


def accepts(automaton: TokenAutomaton, token_ids) -> bool:
    """Whether the automaton allows every token of `token_ids` in turn (host-side check)."""
    state = automaton.start
    for t in token_ids:
        state = int(automaton.table[state, int(t)])
        if state < 0:
            return False
    return True
