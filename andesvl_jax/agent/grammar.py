"""The function-call grammar as a token automaton (infer/constraints.py) for constrained decoding.

A completion either calls: `<nexa_i>` `(` arguments `)` `<nexa_end>` `<|im_end|>`, each argument
what its schema allows (an enum value or boolean from a trie, an integer in range, a quoted string of
the format's characters and at most max_length long) — or answers in text: `<nexa_none>` then any
tokens but functional ones, until `<|im_end|>`. So the first token is always a functional token.

The grammar is first built over characters and whole special tokens (a small DFA), then compiled to
the tokenizer: a token is allowed in a state iff walking its decoded text (or its special-token
symbol) through the DFA succeeds, so any tokenizer works (multi-character tokens included).
"""

from __future__ import annotations

import numpy as np

from andesvl_jax.agent.calls import END_TOKEN, NONE_TOKEN, function_token
from andesvl_jax.agent.functions import STRING_FORBIDDEN, ArgSpec, FunctionRegistry
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.constraints import TokenAutomaton

MAX_INTEGER_TRIE = 1000  # integer ranges up to this many values are enumerated exactly


class _CharDFA:
    """States with explicit symbol edges, an optional character class edge, and 'free' states."""

    def __init__(self):
        self.edges: list[dict[str, int]] = []
        self.chars: list[tuple[str | None, int] | None] = []  # (allowed chars or None=any, next)
        self.free: dict[int, int] = {}  # state -> the state its free text loops in (TEXT, DONE)

    def new(self) -> int:
        self.edges.append({})
        self.chars.append(None)
        return len(self.edges) - 1

    def literal(self, state: int, text: str) -> int:
        """Edges spelling `text` from `state` (shared where they exist); -> the end state."""
        for c in text:
            nxt = self.edges[state].get(c)
            if nxt is None:
                nxt = self.new()
                self.edges[state][c] = nxt
            state = nxt
        return state

    def step(self, state: int, symbol: str) -> int:
        if state in self.free:
            return self.edges[state].get(symbol, self.free[state])
        nxt = self.edges[state].get(symbol)
        if nxt is not None:
            return nxt
        cls = self.chars[state]
        if cls is not None and len(symbol) == 1 and symbol not in STRING_FORBIDDEN:
            allowed, target = cls
            if allowed is None or symbol in allowed:
                return target
        return -1


def _choices(dfa: _CharDFA, start: int, values: list[str], after: int, quoted: bool) -> None:
    """A trie of `values` (quoted or bare) from `start`, each ending in `after`."""
    for v in values:
        text = f"'{v}'" if quoted else v
        end = dfa.literal(start, text[:-1])
        existing = dfa.edges[end].get(text[-1])
        if existing is not None and existing != after:
            raise ValueError(f"value {v!r} is a prefix clash in the call grammar")
        dfa.edges[end][text[-1]] = after


def _argument(dfa: _CharDFA, start: int, spec: ArgSpec, after: int) -> None:
    if spec.type == "boolean":
        _choices(dfa, start, ["true", "false"], after, quoted=False)
    elif spec.type == "integer":
        lo = spec.minimum if spec.minimum is not None else 0
        hi = spec.maximum
        if hi is not None and hi - lo < MAX_INTEGER_TRIE:
            _choices(dfa, start, [str(v) for v in range(lo, hi + 1)], after, quoted=False)
        else:  # digits only; the range is checked when the call is parsed
            digit = dfa.new()
            dfa.chars[start] = ("0123456789", digit)
            dfa.chars[digit] = ("0123456789", digit)
            dfa.edges[digit].update(dfa.edges[after])  # after a digit: what follows the argument
    elif spec.enum is not None:
        _choices(dfa, start, list(spec.enum), after, quoted=True)
    else:  # 'chars', 1..max_length of them, unrolled so the length bound holds
        state = dfa.literal(start, "'")
        allowed = spec.allowed_chars()
        for k in range(spec.max_length):
            nxt = dfa.new()
            dfa.chars[state] = (allowed, nxt)
            if k:
                dfa.edges[state]["'"] = after
            state = nxt
        dfa.edges[state]["'"] = after


def call_dfa(registry: FunctionRegistry, im_end: str) -> tuple[_CharDFA, int]:
    """The character/special-symbol DFA of a completion; -> (dfa, start state)."""
    dfa = _CharDFA()
    start, text, done = dfa.new(), dfa.new(), dfa.new()
    dfa.free[text] = text
    dfa.free[done] = done
    dfa.edges[start][NONE_TOKEN] = text
    dfa.edges[text][im_end] = done
    closing = dfa.new()  # after `)`: the end token, then the turn's end
    ended = dfa.new()
    dfa.edges[closing][END_TOKEN] = ended
    dfa.edges[ended][im_end] = done
    for i, f in enumerate(registry.functions):
        state = dfa.new()
        dfa.edges[start][function_token(i)] = state
        state = dfa.literal(state, "(")
        if not f.arguments:
            dfa.edges[state][")"] = closing
            continue
        for j, arg in enumerate(f.arguments):
            after = dfa.new()
            last = j == len(f.arguments) - 1
            if last:
                dfa.edges[after][")"] = closing
            else:
                dfa.edges[after][","] = dfa.new()
            _argument(dfa, state, arg, after)
            state = after if last else dfa.literal(dfa.edges[after][","], " ")
    return dfa, start


def token_surfaces(tok: TextTokenizer) -> list[tuple[str, bool]]:
    """(text, is_special) of every token id: special tokens as their symbol, others decoded."""
    special = {i for i, t in tok.tokenizer.get_added_tokens_decoder().items() if t.special}
    out = []
    for i in range(tok.vocab_size):
        if i in special:
            out.append((tok.tokenizer.id_to_token(i), True))
        else:
            out.append((tok.decode([i]), False))
    return out


def call_automaton(
    registry: FunctionRegistry, tok: TextTokenizer, functional: set[int] | None = None
) -> TokenAutomaton:
    """The call grammar compiled to `tok` (table [states, vocab])."""
    im_end = tok.tokenizer.id_to_token(tok.special_tokens.im_end)
    dfa, start = call_dfa(registry, im_end)
    surfaces = token_surfaces(tok)
    functional_symbols = {function_token(i) for i in range(len(registry))} | {NONE_TOKEN, END_TOKEN}
    table = np.full((len(dfa.edges), len(surfaces)), -1, np.int32)
    for s in range(len(dfa.edges)):
        for t, (text, special) in enumerate(surfaces):
            if special:
                if s in dfa.free and text in functional_symbols and s != start:
                    continue  # free text never emits a functional token
                table[s, t] = dfa.step(s, text)
            elif text and "\ufffd" not in text:
                state = s
                for c in text:
                    state = dfa.step(state, c)
                    if state < 0:
                        break
                table[s, t] = state
    return TokenAutomaton(table, start).validate(tok.vocab_size)
