"""The evicting prefill: chunks into a compact cache, compacting per the policy's schedule.

Like `infer.generate._prefill` (chunking from `infer.chunks`; one `lax.scan` over chunks, only the last
prompt position of each row projected), with the cache in `models.kv_cache.CompactKVCache` buffers sized by the plan
(`KVSetup`), the policy's observation weights passed to every layer's attention, and its
statistics accumulated. With schedule "chunk" every chunk ends with a compaction back to the
budget, so the prefill buffers hold budget + chunk slots whatever the prompt length; a final
compaction moves the kept entries into the decode buffers (budget + max_new slots).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.infer.chunks import chunk_positions, keep_last_hidden, split_chunks
from andesvl_jax.infer.kv.compact import compact_layer
from andesvl_jax.infer.kv.plan import KVSetup
from andesvl_jax.models.kv_cache import CompactKVCache, CompactLayer


def empty_cache(cfg, batch: int, capacities, dtype) -> CompactKVCache:
    """A compact cache with capacities[l] empty slots per (row, KV head) in layer l."""
    n = batch * cfg.num_kv_heads
    layers = tuple(
        CompactLayer(
            jnp.zeros((n, s, cfg.head_dim), dtype),
            jnp.zeros((n, s, cfg.head_dim), dtype),
            jnp.full((n, s), -1, jnp.int32),
            jnp.zeros((batch,), jnp.int32),
        )
        for s in capacities
    )
    return CompactKVCache(layers, jnp.zeros((batch,), jnp.int32))


def _compact_all(setup, cache, accs, seen, targets, vision, capacities):
    layers, new_accs = [], []
    for i, (layer, acc) in enumerate(zip(cache.layers, accs, strict=True)):
        layer, acc = compact_layer(
            setup.policy, layer, acc, seen, targets[i], vision, setup.caps[i], capacities[i]
        )
        layers.append(layer)
        new_accs.append(acc)
    return CompactKVCache(tuple(layers), cache.lengths), tuple(new_accs)


def compact_prefill(
    graphdef, state, ids, lengths, images, image_flags, vision, targets, setup: KVSetup, chunk: int
):
    """-> (hidden at each row's last prompt token [b, d], decode cache, kept [layers, b * kv]).

    ids [b, t] (t a multiple of chunk); lengths [b]; vision [b, t] bool (vision-token positions);
    targets [layers, b] tokens kept per layer and row."""
    model = nnx.merge(graphdef, state)
    cfg = model.cfg.text
    policy = setup.policy
    b = ids.shape[0]
    embeds = model.embed(ids, images, image_flags)
    cache = empty_cache(cfg, b, setup.prefill, embeds.dtype)
    g = cfg.num_heads // cfg.num_kv_heads
    accs = tuple(
        jnp.zeros((policy.n_obs, b * cfg.num_kv_heads, g, s), jnp.float32) for s in setup.prefill
    )

    def body(carry, xs):
        cache, accs, last, weights = carry
        emb, c = xs
        positions = chunk_positions(c, chunk, b)
        valid = positions < lengths[:, None]
        seen = jnp.minimum(lengths, (c + 1) * chunk)
        # "end" observes the prompt's own last window; "chunk" the window ending this chunk
        obs = policy.observe(positions, valid, seen if policy.schedule == "chunk" else lengths)
        llm = nnx.merge(graphdef, weights).llm
        hidden, cache = llm(emb, positions, valid.astype(jnp.int32), cache.with_obs(obs))
        accs = tuple(
            policy.accumulate(acc, layer.stats)
            for acc, layer in zip(accs, cache.layers, strict=True)
        )
        cache = cache.with_obs(None)
        if policy.schedule == "chunk":
            cache, accs = _compact_all(setup, cache, accs, seen, targets, vision, setup.prefill)
        last = keep_last_hidden(last, hidden, lengths, c, chunk)
        return (cache, accs, last, weights), None

    last = jnp.zeros((b, embeds.shape[-1]), embeds.dtype)
    (cache, accs, last, _), _ = jax.lax.scan(
        body, (cache, accs, last, state), split_chunks(embeds, chunk)
    )
    cache, _ = _compact_all(setup, cache, accs, lengths, targets, vision, setup.decode)
    kept = jnp.stack([jnp.sum(layer.pos >= 0, axis=1) for layer in cache.layers])
    return last, cache, kept
