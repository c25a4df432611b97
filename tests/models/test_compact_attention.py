"""The evicting cache's attention: the blockwise kernel (tile-wise statistics) equals the dense
reference, outputs and per-slot statistics, and its temporaries do not grow with chunk x slots.

Shapes are small and the tiles smaller (8), so every path runs: several query and slot tiles,
a last tile padded, query tiles nobody observes (skipped), GQA, rows of different lengths with
padding queries, empty slots (-1) and per-KV-head different kept positions (AdaKV-like).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andesvl_jax.models.kv_cache import (
    blockwise_compact_attention,
    compact_attention,
    dense_compact_attention,
)

B, T, H, KV, D, S = 2, 20, 4, 2, 8, 45


def inputs(seed=0, obs_queries=3):
    """A chunk of T queries after earlier compactions: each (row, KV head) holds its own sorted
    subset of positions (some slots empty), row 1 is shorter (its last queries are padding)."""
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(B, T, H, D)) * 1.5, jnp.float32)
    k = jnp.asarray(rng.normal(size=(B * KV, S, D)) * 1.5, jnp.float32)
    v = jnp.asarray(rng.normal(size=(B * KV, S, D)), jnp.float32)
    lengths = np.array([T, T - 7])
    start = 60  # the chunk's first position
    q_pos = np.broadcast_to(start + np.arange(T), (B, T))
    q_valid = np.arange(T)[None] < lengths[:, None]
    kv_pos = np.full((B * KV, S), -1)
    for n in range(B * KV):
        r = n // KV
        kept = np.sort(rng.choice(start, size=S - T - 4 - n, replace=False))  # per-head sets
        held = np.concatenate([kept, start + np.arange(lengths[r])])
        kv_pos[n, : len(held)] = held
        kv_pos[n, rng.integers(0, len(kept), 2)] = -1  # evicted slots in the middle
    # observation weights: only the last `obs_queries` valid queries (SnapKV's window), and a
    # second observation over every valid query (H2O): tiles with no weight and with all
    obs = np.zeros((2, B, T), np.float32)
    for r in range(B):
        obs[0, r, lengths[r] - obs_queries : lengths[r]] = 1 / obs_queries
    obs[1] = q_valid * rng.random((B, T))
    return (q, k, v, jnp.asarray(q_valid), jnp.asarray(q_pos, jnp.int32),
            jnp.asarray(kv_pos, jnp.int32), jnp.asarray(obs))  # fmt: skip


@pytest.mark.parametrize("block", [8, 512])  # several tiles (padded, skipped); one
def test_blockwise_equals_dense_outputs_and_statistics(block):
    args = inputs()
    out, stats = dense_compact_attention(*args)
    got_out, got_stats = blockwise_compact_attention(*args, block_q=block, block_k=block)
    assert stats.shape == got_stats.shape == (2, B * KV, H // KV, S)
    np.testing.assert_allclose(got_out, out, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(got_stats, stats, atol=2e-6, rtol=1e-5)
    # padding queries output 0; empty slots get no statistics; each observation sums to its weight
    assert not np.any(np.asarray(got_out)[1, T - 7 :])
    assert not np.any(np.asarray(got_stats).swapaxes(1, 2)[:, :, np.asarray(args[5]) < 0])
    totals = np.asarray(got_stats).sum(-1).reshape(2, B, KV, H // KV)
    np.testing.assert_allclose(totals, np.broadcast_to(np.asarray(args[6]).sum(-1)[..., None, None],
                                                       totals.shape), rtol=1e-5)  # fmt: skip


def test_blockwise_without_observation_and_dispatch():
    args = inputs(seed=1)
    out, _ = dense_compact_attention(*args[:-1], None)
    got, stats = blockwise_compact_attention(*args[:-1], None, block_q=8, block_k=8)
    assert stats is None
    np.testing.assert_allclose(got, out, atol=2e-6, rtol=1e-5)
    _, forced_stats = compact_attention(*args, impl="blockwise")  # the dispatch's name
    np.testing.assert_allclose(forced_stats, dense_compact_attention(*args)[1], atol=2e-6)


def _temp_bytes(fn, t, slots, b=1, h=4, kv=2, d=16):
    spec = jax.ShapeDtypeStruct
    args = (
        spec((b, t, h, d), jnp.float32),
        spec((b * kv, slots, d), jnp.float32),
        spec((b * kv, slots, d), jnp.float32),
        spec((b, t), bool),
        spec((b, t), jnp.int32),
        spec((b * kv, slots), jnp.int32),
        spec((2, b, t), jnp.float32),
    )
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_temporaries_grow_with_chunk_not_with_chunk_times_slots():
    """XLA's compiled temporaries at two buffer sizes (the budget) for two chunks: per added slot
    the blockwise program grows by the same bytes whatever the chunk (K/V tiles, statistics), the
    dense one by chunk x heads x 4 bytes (its softmax)."""
    small, big = 1024, 4096

    def per_slot(fn, t):
        return (_temp_bytes(fn, t, big) - _temp_bytes(fn, t, small)) / (big - small)

    dense = {t: per_slot(dense_compact_attention, t) for t in (64, 256)}
    assert dense[256] > 3 * dense[64]  # the check can see chunk x slots growth
    blockwise = {t: per_slot(blockwise_compact_attention, t) for t in (64, 256)}
    assert blockwise[256] < 1.25 * blockwise[64], blockwise
    assert blockwise[256] < dense[64] / 4, (blockwise, dense)
    assert _temp_bytes(blockwise_compact_attention, 256, small) > _temp_bytes(
        blockwise_compact_attention, 64, small
    )  # the query side still grows with the chunk
