"""EAGLE-2 speculative generation: one jitted function, prefill + a while loop of draft-verify steps.

State at the start of every step, per row: the target's cache holds the n committed tokens before
the root x_n (the last emitted token); the draft's cache holds its positions < n, and
`root_feature` is the draft's output at position n - 1 (input: x_n and the target feature f_{n-1}).
A step:
  1. grow the draft tree from the root (`tree.grow`: depth - 1 draft forwards on the frontier);
  2. verify: ONE target forward over the root + total_tokens nodes, positions n + depth, a tree
     attention mask (`models.kv_cache.TreeMask`);
  3. accept the longest matching path (`accept`), emit its a tokens + the bonus token;
  4. commit the path's KV in place (`commit`), n += a + 1;
  5. catch the draft up: one draft forward over the a + 1 new (token, target feature) pairs gives
     the next root feature.
Rows accept independently (per-row lengths, as plain decoding). Prompts and images are prefilled
exactly as `infer.generate` does; the draft then reads the prompt's target features once.
"""

from __future__ import annotations

import functools
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
from andesvl_jax.infer.generate import Generation, StreamFn, prefill_embeds
from andesvl_jax.infer.sampling import SamplingBatch, sample_next
from andesvl_jax.infer.speculative.accept import accept_greedy, accept_sampled, target_probs
from andesvl_jax.infer.speculative.commit import commit_path
from andesvl_jax.infer.speculative.params import TreeParams, check_sampling
from andesvl_jax.infer.speculative.tree import grow
from andesvl_jax.models.kv_cache import KVCache, TreeMask
from andesvl_jax.models.layers import Linear, rows_layout


class SpecStats(NamedTuple):
    """steps [b]: verification forwards per row; tokens [b]: tokens those steps produced
    (accepted + the bonus, before cutting at a stop token or max_new_tokens).
    tau = tokens / steps, the average acceptance length *including* the bonus token."""

    steps: np.ndarray
    tokens: np.ndarray

    @property
    def tau(self) -> float:
        return float(self.tokens.sum() / max(int(self.steps.sum()), 1))


class _Sink:
    fn: StreamFn | None = None

    @classmethod
    def emit(cls, start, block, count, done) -> None:
        """Forward a step's block [b, w] as single tokens (step, tokens [b], done [b])."""
        if cls.fn is None:
            return
        start, block, count, done = map(np.asarray, (start, block, count, done))
        for i in range(int(count.max(initial=0))):
            cls.fn(start + i, block[:, i], done | (i >= count))


def _draft_prefill(draft, llm, embeds, feats, lengths, kv, chunk: int):
    """The draft over the prompt: pairs (embedding of x_{i+1}, f_i) -> (root feature, draft kv)."""
    b = embeds.shape[0]

    def body(carry, xs):
        kv, last = carry
        (emb, feat), c = xs
        positions = chunk_positions(c, chunk, b)
        seg = (positions < lengths[:, None]).astype(jnp.int32)
        g, kv = draft(emb, feat, positions, seg, kv, jnp.full((b,), c * chunk, jnp.int32))
        return (kv, keep_last_hidden(last, g, lengths, c, chunk)), None

    pairs = (split_chunks(embeds, chunk)[0], split_chunks(feats, chunk)[0])
    chunks = split_chunks(embeds, chunk)[1]
    last = jnp.zeros((b, feats.shape[-1]), feats.dtype)
    (kv, last), _ = jax.lax.scan(body, (kv, last), (pairs, chunks))
    return last, kv


@functools.partial(
    jax.jit,
    static_argnames=("graphdef", "draft_def", "params", "max_new", "chunk", "greedy", "stream"),
)
def _speculate(
    graphdef,
    state,
    draft_def,
    draft_state,
    ids,
    lengths,
    images,
    image_flags,
    sampling: SamplingBatch,
    stop_ids,
    pad_id,
    *,
    params: TreeParams,
    max_new: int,
    chunk: int,
    greedy: bool,
    stream: bool,
):
    model, draft = nnx.merge(graphdef, state), nnx.merge(draft_def, draft_state)
    llm = model.llm
    b, t = ids.shape
    depth, width = params.depth, params.verified
    capacity = t + max_new + width + params.candidates + 2 * depth + 2
    cache = model.init_cache(b, capacity)
    embeds = model.embed(ids, images, image_flags)
    last, cache, hidden = prefill_embeds(graphdef, state, embeds, lengths, cache, chunk, True)
    first = sample_next(llm.logits(last), sampling, jnp.int32(0), None, greedy)

    # The draft reads (embedding of the next token, target feature) at every prompt position; the
    # next token of the last one is the first generated token.
    shifted = jnp.concatenate([embeds[:, 1:], jnp.zeros_like(embeds[:, :1])], axis=1)
    at_last = (jnp.arange(t)[None] == (lengths - 1)[:, None])[..., None]
    shifted = jnp.where(at_last, llm.embed(first)[:, None], shifted)
    draft_cfg = draft.cfg.text
    dk = KVCache.init(draft_cfg, b, capacity, embeds.dtype, stacked=False)
    root_feature, draft_kv = _draft_prefill(
        draft, llm, shifted, hidden, lengths, (dk.k[0], dk.v[0]), chunk
    )

    out = jnp.full((b, max_new + depth + 1), pad_id, jnp.int32)
    out = out.at[:, 0].set(first)
    stopped = jnp.isin(first, stop_ids)
    count = jnp.ones((b,), jnp.int32)
    if stream:
        jax.debug.callback(
            _Sink.emit, jnp.int32(0), first[:, None], count, jnp.zeros((b,), bool), ordered=True
        )
    slots = jnp.arange(depth + 1, dtype=jnp.int32)[None]

    def cond(carry):
        step, count, stopped = carry[0], carry[5], carry[6]
        return (step < max_new) & ~jnp.all(stopped | (count >= max_new))

    def body(carry):
        step, root, root_feature, cache, draft_kv, count, stopped, out, steps, made = carry
        active = ~stopped & (count < max_new)
        n = cache.lengths
        tree, draft_kv = grow(draft, llm, root_feature, root, n, draft_kv, params)
        hidden, cache = llm(
            llm.embed(tree.tokens),
            n[:, None] + tree.depth,
            jnp.ones(tree.tokens.shape, jnp.int32),
            cache._replace(lengths=n),
            tree=TreeMask(n, tree.ancestors),
        )
        logits = llm.logits(hidden)
        chosen = accept_greedy(tree, logits, depth)
        if not greedy:
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(sampling.keys, step + 1)
            probs = target_probs(logits, sampling.temperature, sampling.top_k, sampling.top_p)
            sampled = accept_sampled(tree, probs, keys, depth)
            chosen = jax.tree.map(
                lambda g, s: jnp.where(
                    (sampling.temperature > 0).reshape((b,) + (1,) * (g.ndim - 1)), s, g
                ),
                chosen,
                sampled,
            )
        a = chosen.count
        new_len = jnp.where(active, n + a + 1, n)
        cache = commit_path(cache, n, chosen.path, width, new_len)

        # Emitted block: the path's tokens after the root, then the bonus token.
        path_tokens = jnp.take_along_axis(tree.tokens, chosen.path, axis=1)
        block = jnp.concatenate([path_tokens[:, 1:], jnp.zeros((b, 1), jnp.int32)], axis=1)
        block = jnp.where(slots == a[:, None], chosen.bonus[:, None], block)
        made_here = a + 1
        hits = jnp.isin(block, stop_ids) & (slots < made_here[:, None])
        hit_any = jnp.any(hits, axis=1)
        emitted = jnp.where(hit_any, jnp.argmax(hits, axis=1) + 1, made_here)
        emitted = jnp.where(active, emitted, 0)
        block = jnp.where(slots < emitted[:, None], block, pad_id)
        for row in range(b):
            out = jax.lax.dynamic_update_slice(out, block[row][None], (row, count[row]))
        if stream:
            jax.debug.callback(_Sink.emit, count, block, emitted, ~active, ordered=True)

        # The draft catches up on the a + 1 new positions with the target's features.
        feats = jnp.take_along_axis(hidden, chosen.path[:, :, None], axis=1)
        g, draft_kv = draft(
            llm.embed(block),
            feats,
            n[:, None] + slots,
            (slots <= a[:, None]).astype(jnp.int32),
            draft_kv,
            n,
        )
        root_feature = jnp.take_along_axis(g, a[:, None, None], axis=1)[:, 0]
        root = jnp.where(active, chosen.bonus, root)
        return (
            step + 1,
            root,
            root_feature,
            cache,
            draft_kv,
            count + emitted,
            stopped | (active & hit_any),
            out,
            steps + active,
            made + jnp.where(active, made_here, 0),
        )

    zeros = jnp.zeros((b,), jnp.int32)
    carry = (jnp.int32(0), first, root_feature, cache, draft_kv, count, stopped, out, zeros, zeros)
    carry = jax.lax.while_loop(cond, body, carry)
    stopped, out, steps, made = carry[6], carry[7], carry[8], carry[9]
    return out[:, :max_new], stopped, steps, made


def decoding_head(draft):
    """`draft` with its kernels stored [out, in] (`models.layers.rows_layout`) like the target's in
    the decoding layout: a converted copy, or `draft` itself when it already is."""
    linears = [m for _, m in nnx.iter_modules(draft) if isinstance(m, Linear)]
    if all(m.out_in for m in linears):
        return draft
    return rows_layout(nnx.clone(draft))


def speculative_generate(
    model,
    draft,
    input_ids: np.ndarray,
    prompt_lengths: np.ndarray,
    images,
    sampling: SamplingBatch,
    *,
    max_new_tokens: int,
    stop_tokens: tuple[int, ...],
    pad_id: int,
    params: TreeParams | None = None,
    prefill_chunk: int = 256,
    image_flags=None,
    stream: StreamFn | None = None,
) -> tuple[Generation, SpecStats]:
    """`infer.generate.generate` with an EAGLE draft head and EAGLE-2 tree verification.

    The model must have separate layers (`infer.engine.decoding_layout`, as the Engine runs it).
    Checked before compiling: the tree parameters, the draft head against the target, and the
    sampling options (no presence penalty). params None = the EAGLE-2 defaults (10 / 7 / 60)."""
    params = (params or TreeParams()).validate()
    draft.check_target(model.cfg.text)
    check_sampling(sampling)
    if model.cfg.scan_layers:
        raise ValueError(
            "speculative decoding needs the target's layers separate (scan_layers=False): pass "
            "the model through infer.engine.decoding_layout, as the Engine does"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    input_ids, lengths, image_flags, chunk = padded_prompts(
        input_ids, prompt_lengths, image_flags, prefill_chunk, pad_id
    )
    graphdef, state = nnx.split(model)
    # the head's kernels [out, in] like the target's in the decoding layout (a copy; few-row
    # products read that layout fastest on CPU)
    draft_def, draft_state = nnx.split(decoding_head(draft))
    _Sink.fn = stream
    try:
        out, stopped, steps, made = _speculate(
            graphdef,
            state,
            draft_def,
            draft_state,
            input_ids,
            lengths,
            images,
            image_flags,
            sampling,
            np.asarray(stop_tokens or (-1,), np.int32),
            np.int32(pad_id),
            params=params,
            max_new=max_new_tokens,
            chunk=chunk,
            greedy=bool(np.all(np.asarray(sampling.temperature) == 0)),
            stream=stream is not None,
        )
        out, stopped = np.asarray(out), np.asarray(stopped)
    finally:
        _Sink.fn = None
    hits = np.isin(out, np.asarray(stop_tokens or (-1,)))
    first_stop = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, max_new_tokens)
    generation = Generation(out, first_stop.astype(np.int32), stopped)
    return generation, SpecStats(np.asarray(steps), np.asarray(made))
