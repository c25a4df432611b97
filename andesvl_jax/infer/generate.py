"""The generation core: one jitted function does prefill and the whole decode loop.

* Prefill: images are encoded once and merged into the prompt embeddings; the LLM then consumes
  the prompt in chunks of `prefill_chunk` tokens (a `lax.scan`), so a long prompt never builds a
  [t, t] attention matrix and the cache is written chunk by chunk. Only each row's last prompt
  position is projected to the vocabulary.
* Decode: a `lax.while_loop` that stops as soon as every row has emitted a stop token (or after
  `max_new_tokens`); no per-token Python. The KV cache is static-shape ([layers, b, S, kv, hd]) with
  per-row lengths, so prompts of different lengths and image counts decode in one batch.
* KV eviction (`infer/kv/`): with a policy and a budget the prefill runs into a compact cache
  that each chunk (or the prompt's end, per policy) compacts to the budget, and decoding appends to
  that compact cache (`kv.prefill.compact_prefill`).
* Constrained decoding (`infer/constraints.py`): with a token automaton every row carries a state
  and samples only among the tokens that state allows (e.g. agent/grammar.py's call grammar).
* Streaming: an optional host callback receives (step, tokens [b], done [b]) after every step.

Prompts are right-padded to a bucket length (a multiple of the chunk) and images to a bucket of
patches, so a serving loop compiles a handful of shapes, not one per request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.infer.chunks import (
    chunk_positions,
    keep_last_hidden,
    padded_prompts,
    split_chunks,
)
from andesvl_jax.infer.constraints import TokenAutomaton, advance, mask_logits
from andesvl_jax.infer.kv import KVReport, KVSetup, make_report
from andesvl_jax.infer.kv import plan as kv_plan
from andesvl_jax.infer.kv.prefill import compact_prefill
from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams, sample_next

StreamFn = Callable[[np.ndarray, np.ndarray, np.ndarray], None]  # (step, tokens [b], done [b])


class Generation(NamedTuple):
    """tokens [b, max_new] (pad after a row stops); num_tokens [b] (the stop token included);
    stopped [b] True where a stop token ended the row (False: it ran out of max_new_tokens);
    kv: what eviction kept and the cache bytes (None without a kv policy)."""

    tokens: np.ndarray
    num_tokens: np.ndarray
    stopped: np.ndarray
    kv: KVReport | None = None


class _StreamSink:
    """The host function the compiled loop streams to. The loop is compiled once with streaming on
    (a static flag) and calls `emit`, which forwards to whichever function this call installed."""

    fn: StreamFn | None = None

    @classmethod
    def emit(cls, step, tokens, done) -> None:
        if cls.fn is not None:
            cls.fn(np.asarray(step), np.asarray(tokens), np.asarray(done))



def _prefill(graphdef, state, ids, lengths, images, image_flags, cache, chunk: int):
    """Write the prompts into the cache chunk by chunk; return (hidden at each row's last token, cache)."""
    embeds = nnx.merge(graphdef, state).embed(ids, images, image_flags)
    last, cache, _ = prefill_embeds(graphdef, state, embeds, lengths, cache, chunk)
    return last, cache


def prefill_embeds(graphdef, state, embeds, lengths, cache, chunk: int, all_hidden: bool = False):
    """Prefill from input embeddings [b, t, d] -> (hidden at each row's last token, cache, and the
    hidden states of every position [b, t, d] when `all_hidden`, else None)."""
    b = embeds.shape[0]

    def body(carry, xs):
        cache, last, weights = carry
        emb, c = xs
        positions = chunk_positions(c, chunk, b)
        segment_ids = (positions < lengths[:, None]).astype(jnp.int32)
        hidden, cache = nnx.merge(graphdef, weights).llm(emb, positions, segment_ids, cache)
        last = keep_last_hidden(last, hidden, lengths, c, chunk)
        return (cache, last, weights), (hidden if all_hidden else None)

    last = jnp.zeros((b, embeds.shape[-1]), embeds.dtype)
    (cache, last, _), hidden = jax.lax.scan(body, (cache, last, state), split_chunks(embeds, chunk))
    if all_hidden:
        hidden = hidden.swapaxes(0, 1).reshape(embeds.shape)
    return last, cache, hidden


@functools.partial(
    jax.jit,
    static_argnames=("graphdef", "max_new", "chunk", "greedy", "penalised", "stream", "kv"),
)
def _generate(
    graphdef,
    state,
    ids,
    lengths,
    images,
    image_flags,
    sampling: SamplingBatch,
    stop_ids,
    pad_id,
    *,
    max_new: int,
    chunk: int,
    greedy: bool,
    penalised: bool,
    stream: bool,
    kv: KVSetup | None = None,
    kv_targets=None,
    vision=None,
    constraint=None,
):
    model = nnx.merge(graphdef, state)
    b, t = ids.shape
    kept = None
    if kv is None:
        cache = model.init_cache(b, t + max_new)
        last, cache = _prefill(graphdef, state, ids, lengths, images, image_flags, cache, chunk)
    else:
        last, cache, kept = compact_prefill(
            graphdef, state, ids, lengths, images, image_flags, vision, kv_targets, kv, chunk
        )
    generated = jnp.zeros((b, model.cfg.text.vocab_size), bool) if penalised else None
    # constraint: (table [S, v], start state) of a TokenAutomaton; rows carry their states
    states = None if constraint is None else jnp.full((b,), constraint[1], jnp.int32)

    def allowed(logits, states):
        return logits if constraint is None else mask_logits(logits, constraint[0], states)

    def moved(states, token, done):
        return None if constraint is None else advance(constraint[0], states, token, done)

    first = sample_next(
        allowed(model.llm.logits(last), states), sampling, jnp.int32(0), generated, greedy
    )
    out = jnp.full((b, max_new), pad_id, jnp.int32)

    def emit(step, token, done, out, generated):
        """Record `token` (pad for finished rows) as output `step`; -> (token, done, out, generated)."""
        token = jnp.where(done, pad_id, token)
        out = jax.lax.dynamic_update_slice(out, token[:, None], (0, step))
        if stream:
            jax.debug.callback(_StreamSink.emit, step, token, done, ordered=True)
        done = done | jnp.isin(token, stop_ids)
        if generated is not None:
            generated = generated.at[jnp.arange(b), token].set(True)
        return token, done, out, generated

    not_done = jnp.zeros((b,), bool)
    states = moved(states, first, not_done)
    token, done, out, generated = emit(jnp.int32(0), first, not_done, out, generated)

    # One decode forward per iteration, no branch inside: N tokens = the prefill + N - 1 forwards.
    # The cache is loop carry that only the forward updates, so XLA updates it in place.
    def cond(carry):
        step, _, _, done, *_ = carry
        return (step + 1 < max_new) & ~jnp.all(done)

    def body(carry):
        step, token, cache, done, out, generated, weights, states = carry
        logits, cache = nnx.merge(graphdef, weights)(token[:, None], cache=cache)
        token = sample_next(allowed(logits[:, -1], states), sampling, step + 1, generated, greedy)
        states = moved(states, token, done)
        token, done, out, generated = emit(step + 1, token, done, out, generated)
        return step + 1, token, cache, done, out, generated, weights, states

    carry = (jnp.int32(0), token, cache, done, out, generated, state, states)
    _, _, _, done, out, _, _, _ = jax.lax.while_loop(cond, body, carry)
    return out, done, kept


def generate(
    model,
    input_ids: np.ndarray,
    prompt_lengths: np.ndarray,
    images,
    sampling: SamplingBatch,
    *,
    max_new_tokens: int,
    stop_tokens: tuple[int, ...],
    pad_id: int,
    prefill_chunk: int = 256,
    image_flags=None,
    stream: StreamFn | None = None,
    kv_policy=None,
    kv_budget=None,
    constraint: TokenAutomaton | None = None,
) -> Generation:
    """Generate for b right-padded prompts. input_ids [b, t]; prompt_lengths [b]; images PackedImages.

    constraint: a `TokenAutomaton` (infer/constraints.py): every row starts in its start state and
    only emits tokens the automaton allows (an allowed-token mask before sampling).

    The prompt length is padded up to a bucket (a multiple of the chunk); the chunk itself shrinks
    to the bucket for short prompts. kv_policy (a name in `infer.kv.POLICIES` or a `KVPolicy`)
    with kv_budget (fraction kept in (0, 1] or a token count) evicts the KV cache; the model must
    have separate layers (`infer.engine.decoding_layout`, as the Engine runs it).
    """
    input_ids, lengths, image_flags, chunk = padded_prompts(
        input_ids, prompt_lengths, image_flags, prefill_chunk, pad_id
    )
    b, padded = input_ids.shape
    kv = _kv_arguments(
        model,
        kv_policy,
        kv_budget,
        input_ids,
        lengths,
        images,
        image_flags,
        t=padded,
        chunk=chunk,
        max_new=max_new_tokens,
    )
    graphdef, state = nnx.split(model)
    _StreamSink.fn = stream
    try:
        out, stopped, kept = _generate(
            graphdef,
            state,
            input_ids,
            lengths,
            images,
            image_flags,
            sampling,
            np.asarray(stop_tokens or (-1,), np.int32),
            np.int32(pad_id),
            max_new=max_new_tokens,
            chunk=chunk,
            greedy=bool(np.all(np.asarray(sampling.temperature) == 0)),
            penalised=bool(np.any(np.asarray(sampling.presence_penalty))),
            stream=stream is not None,
            **(kv[0] if kv else {}),
            constraint=None
            if constraint is None
            else (jnp.asarray(constraint.validate(model.cfg.text.vocab_size).table), constraint.start),
        )
        out, stopped = np.asarray(out), np.asarray(stopped)  # waits for the last callback too
    finally:
        _StreamSink.fn = None
    hits = np.isin(out, np.asarray(stop_tokens or (-1,)))
    first_stop = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, max_new_tokens)
    report = None
    if kv:
        cfg = model.cfg.text
        report = make_report(
            kv[1], np.asarray(kept), cfg, b, padded, max_new_tokens, model.cfg.dtype
        )
    return Generation(out, first_stop.astype(np.int32), stopped, report)


def _kv_arguments(model, policy, budget, ids, lengths, images, image_flags, *, t, chunk, max_new):
    """Check an eviction request on the host (before anything compiles) -> (the `_generate`
    keyword arguments, the plan), or None without a policy."""
    if policy is None:
        if budget is not None:
            raise ValueError("kv_budget given without a kv_policy")
        return None
    if budget is None:
        raise ValueError(f"kv_policy {policy!r} needs a kv_budget (fraction kept or token count)")
    if model.cfg.scan_layers:
        raise ValueError(
            "KV eviction needs the model's layers separate (scan_layers=False): pass the model "
            "through infer.engine.decoding_layout, as the Engine does"
        )
    if image_flags is not None:
        vision = np.asarray(image_flags, bool)
    elif images is not None:
        vision = ids == model.cfg.tokens.image_pad
    else:
        vision = np.zeros(ids.shape, bool)
    plan = kv_plan(
        policy,
        budget,
        lengths,
        padded=t,
        chunk=chunk,
        max_new=max_new,
        num_layers=model.cfg.text.num_layers,
        vision_counts=[int(vision[r, :n].sum()) for r, n in enumerate(lengths)],
    )
    args = dict(kv=plan.setup, kv_targets=plan.targets, vision=vision)
    return args, plan


def greedy_generate(
    model, input_ids, images=None, image_flags=None, max_new_tokens: int = 16, prompt_lengths=None
) -> np.ndarray:
    """Exactly max_new_tokens greedy ids [b, n] for raw (right-padded) prompts, no stop tokens:
    the reference decoder for checking imported checkpoints against fixture outputs."""
    input_ids = np.asarray(input_ids, np.int32)
    b, t = input_ids.shape
    lengths = np.full((b,), t, np.int32) if prompt_lengths is None else prompt_lengths
    greedy = SamplingBatch.of([SamplingParams()] * b)
    return generate(
        model,
        input_ids,
        lengths,
        images,
        greedy,
        max_new_tokens=max_new_tokens,
        stop_tokens=(),
        pad_id=0,
        image_flags=image_flags,
    ).tokens
