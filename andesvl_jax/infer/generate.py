"""The generation core: one jitted function does prefill and the whole decode loop.

* Prefill: images are encoded once and merged into the prompt embeddings; the LLM then consumes
  the prompt in chunks of `prefill_chunk` tokens (a `lax.scan`), so a long prompt never builds a
  [t, t] attention matrix and the cache is written chunk by chunk. Only each row's last prompt
  position is projected to the vocabulary.
* Decode: a `lax.while_loop` that stops as soon as every row has emitted a stop token (or after
  `max_new_tokens`); no per-token Python. The KV cache is static-shape ([layers, b, S, kv, hd]) with
  per-row lengths, so prompts of different lengths and image counts decode in one batch.
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

from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams, sample_next

StreamFn = Callable[[np.ndarray, np.ndarray, np.ndarray], None]  # (step, tokens [b], done [b])


class Generation(NamedTuple):
    """tokens [b, max_new] (pad after a row stops); num_tokens [b] (the stop token included);
    stopped [b] True where a stop token ended the row (False: it ran out of max_new_tokens)."""

    tokens: np.ndarray
    num_tokens: np.ndarray
    stopped: np.ndarray


class _StreamSink:
    """The host function the compiled loop streams to. The loop is compiled once with streaming on
    (a static flag) and calls `emit`, which forwards to whichever function this call installed."""

    fn: StreamFn | None = None

    @classmethod
    def emit(cls, step, tokens, done) -> None:
        if cls.fn is not None:
            cls.fn(np.asarray(step), np.asarray(tokens), np.asarray(done))


def bucket(n: int, multiple: int) -> int:
    """Smallest multiple of `multiple` times a power of two that holds n (few distinct shapes)."""
    size = multiple
    while size < n:
        size *= 2
    return size


def _prefill(graphdef, state, ids, lengths, images, image_flags, cache, chunk: int):
    """Write the prompts into the cache chunk by chunk; return (hidden at each row's last token, cache)."""
    model = nnx.merge(graphdef, state)
    b, t = ids.shape
    embeds = model.embed(ids, images, image_flags)
    n_chunks = t // chunk
    per_chunk = embeds.reshape(b, n_chunks, chunk, -1).swapaxes(0, 1)
    last_index = lengths - 1

    def body(carry, xs):
        cache, last, weights = carry
        emb, c = xs
        positions = jnp.broadcast_to(c * chunk + jnp.arange(chunk, dtype=jnp.int32), (b, chunk))
        segment_ids = (positions < lengths[:, None]).astype(jnp.int32)
        hidden, cache = nnx.merge(graphdef, weights).llm(emb, positions, segment_ids, cache)
        offset = last_index - c * chunk
        inside = (offset >= 0) & (offset < chunk)
        picked = jnp.take_along_axis(hidden, jnp.clip(offset, 0, chunk - 1)[:, None, None], 1)
        last = jnp.where(inside[:, None], picked[:, 0], last)
        return (cache, last, weights), None

    last = jnp.zeros((b, embeds.shape[-1]), embeds.dtype)
    (cache, last, _), _ = jax.lax.scan(
        body, (cache, last, state), (per_chunk, jnp.arange(n_chunks, dtype=jnp.int32))
    )
    return last, cache


@functools.partial(
    jax.jit, static_argnames=("graphdef", "max_new", "chunk", "greedy", "penalised", "stream")
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
):
    model = nnx.merge(graphdef, state)
    b, t = ids.shape
    cache = model.init_cache(b, t + max_new)
    last, cache = _prefill(graphdef, state, ids, lengths, images, image_flags, cache, chunk)
    generated = jnp.zeros((b, model.cfg.text.vocab_size), bool) if penalised else None
    first = sample_next(model.llm.logits(last), sampling, jnp.int32(0), generated, greedy)
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

    token, done, out, generated = emit(jnp.int32(0), first, jnp.zeros((b,), bool), out, generated)

    # One decode forward per iteration, no branch inside: N tokens = the prefill + N - 1 forwards.
    # The cache is loop carry that only the forward updates, so XLA updates it in place.
    def cond(carry):
        step, _, _, done, *_ = carry
        return (step + 1 < max_new) & ~jnp.all(done)

    def body(carry):
        step, token, cache, done, out, generated, weights = carry
        logits, cache = nnx.merge(graphdef, weights)(token[:, None], cache=cache)
        token = sample_next(logits[:, -1], sampling, step + 1, generated, greedy)
        token, done, out, generated = emit(step + 1, token, done, out, generated)
        return step + 1, token, cache, done, out, generated, weights

    carry = (jnp.int32(0), token, cache, done, out, generated, state)
    _, _, _, done, out, _, _ = jax.lax.while_loop(cond, body, carry)
    return out, done


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
) -> Generation:
    """Generate for b right-padded prompts. input_ids [b, t]; prompt_lengths [b]; images PackedImages.

    The prompt length is padded up to a bucket (a multiple of the chunk); the chunk itself shrinks
    to the bucket for short prompts.
    """
    input_ids = np.asarray(input_ids, np.int32)
    lengths = np.asarray(prompt_lengths, np.int32)
    if lengths.min() < 1:
        raise ValueError("every prompt needs at least one token")
    b, t = input_ids.shape
    chunk = min(prefill_chunk, bucket(t, 16))
    padded = bucket(t, chunk)
    if padded != t:
        input_ids = np.pad(input_ids, ((0, 0), (0, padded - t)), constant_values=pad_id)
        if image_flags is not None:
            image_flags = np.pad(np.asarray(image_flags), ((0, 0), (0, padded - t)))
    graphdef, state = nnx.split(model)
    _StreamSink.fn = stream
    try:
        out, stopped = _generate(
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
        )
        out, stopped = np.asarray(out), np.asarray(stopped)  # waits for the last callback too
    finally:
        _StreamSink.fn = None
    hits = np.isin(out, np.asarray(stop_tokens or (-1,)))
    first_stop = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, max_new_tokens)
    return Generation(out, first_stop.astype(np.int32), stopped)


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
