"""Each eviction policy's selection against a numpy reference on a small attention tensor.

Two rows of different lengths (the second padded), GQA (4 query heads on 2 KV heads), one prompt
scored at its end (schedule "end", one observation): the attention our cache kernel returns feeds
the policy, and the kept positions of every (row, KV head) must equal the paper's rule computed
in numpy from the full softmax matrix.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from andesvl_jax.infer.kv import get_policy
from andesvl_jax.infer.kv.compact import compact_layer
from andesvl_jax.infer.kv.pyramidkv import pyramid_budget
from andesvl_jax.models.kv_cache import CompactLayer, compact_attention

B, T, H, KV, D = 2, 40, 4, 2, 8
G = H // KV
LENGTHS = np.array([40, 29])


@pytest.fixture(scope="module")
def tensors():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(B, T, H, D)).astype(np.float32) * 1.5
    k = rng.normal(size=(B * KV, T, D)).astype(np.float32) * 1.5
    v = rng.normal(size=(B * KV, T, D)).astype(np.float32)
    return q, k, v


def attention_np(q, k):
    """Causal softmax [b, h, T, T] over each row's valid keys (float64)."""
    out = np.zeros((B, H, T, T))
    for r in range(B):
        n = LENGTHS[r]
        for j in range(H):
            logits = q[r, :, j].astype(np.float64) @ k[r * KV + j // G].T.astype(np.float64)
            logits /= np.sqrt(D)
            mask = np.tril(np.ones((T, T), bool)) & (np.arange(T)[None] < n)
            logits = np.where(mask, logits, -np.inf)
            w = np.exp(logits - logits.max(-1, keepdims=True))
            out[r, j] = w / w.sum(-1, keepdims=True)
    return out


def pool_np(x, kernel):
    if kernel == 1:
        return x
    return np.convolve(np.pad(x, kernel // 2), np.ones(kernel) / kernel, mode="valid")


def top(scores, n):
    """Indices of the n largest scores (a set)."""
    return set(np.argsort(-scores, kind="stable")[:n].tolist())


def run(policy, tensors, targets, cap=T):
    """Our selection -> kept positions {(row, kv head): set}."""
    q, k, v = tensors
    pos_rows = np.where(np.arange(T)[None] < LENGTHS[:, None], np.arange(T)[None], -1)
    kv_pos = jnp.asarray(np.repeat(pos_rows, KV, axis=0), jnp.int32)
    q_pos = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    seen = jnp.asarray(LENGTHS, jnp.int32)
    q_valid = jnp.asarray(pos_rows >= 0)
    obs = policy.observe(q_pos, q_valid, seen)
    _, stats = compact_attention(jnp.asarray(q), k, v, q_valid, q_pos, kv_pos, obs)
    layer = CompactLayer(jnp.asarray(k), jnp.asarray(v), kv_pos, seen)
    acc = policy.accumulate(jnp.zeros_like(stats), stats)
    new, _ = compact_layer(
        policy, layer, acc, seen, jnp.asarray(targets, jnp.int32), None, cap, cap
    )
    pos = np.asarray(new.pos)
    return {
        (r, h): set(pos[r * KV + h][pos[r * KV + h] >= 0].tolist())
        for r in range(B)
        for h in range(KV)
    }


def snap_scores_np(attn, r, h, window, kernel, aggregate=np.mean):
    """SnapKV per KV head: mean over the window queries, pooled per query head, aggregated."""
    n = LENGTHS[r]
    per_head = [
        pool_np(attn[r, h * G + j, n - window : n, : n - window].mean(0), kernel) for j in range(G)
    ]
    return aggregate(np.stack(per_head), axis=0)


TARGETS = np.array([16, 12])


def test_snapkv(tensors):
    pol = get_policy("snapkv", window=6, kernel=5, schedule="end")
    attn = attention_np(*tensors[:2])
    ours = run(pol, tensors, TARGETS)
    for (r, h), kept in ours.items():
        n = LENGTHS[r]
        s = snap_scores_np(attn, r, h, 6, 5)
        assert kept == top(s, TARGETS[r] - 6) | set(range(n - 6, n)), (r, h)


def test_streaming_llm(tensors):
    pol = get_policy("streaming", sinks=4, schedule="end")
    for (r, _), kept in run(pol, tensors, TARGETS).items():
        n = LENGTHS[r]
        assert kept == set(range(4)) | set(range(n - (TARGETS[r] - 4), n))


def test_h2o(tensors):
    pol = get_policy("h2o", window=5, schedule="end")
    attn = attention_np(*tensors[:2])
    for (r, h), kept in run(pol, tensors, TARGETS).items():
        n = LENGTHS[r]
        s = attn[r, h * G : (h + 1) * G, :n, : n - 5].sum(axis=(0, 1))  # every query, the group
        assert kept == top(s, TARGETS[r] - 5) | set(range(n - 5, n)), (r, h)


def test_multiwindow_at_the_end_is_gqa_max_snapkv_with_sinks(tensors):
    pol = get_policy("multiwindow", window=6, sinks=3, kernel=3, schedule="end", observe_window=6)
    attn = attention_np(*tensors[:2])
    for (r, h), kept in run(pol, tensors, TARGETS).items():
        n = LENGTHS[r]
        s = snap_scores_np(attn, r, h, 6, 3, aggregate=np.max)
        s[:3] = np.inf  # sinks protected
        assert kept == top(s, TARGETS[r] - 6) | set(range(n - 6, n)), (r, h)
        assert {0, 1, 2} <= kept


def test_multiwindow_remembers_earlier_windows():
    pol = get_policy("multiwindow", window=2, sinks=0, kernel=1, decay=0.5)
    now = jnp.zeros((1, 1, 1, 6)).at[0, 0, 0, 1].set(0.2)
    remembered = jnp.zeros((1, 1, 1, 6)).at[0, 0, 0, 3].set(1.0)
    pos, seen = jnp.arange(6)[None], jnp.asarray([6])
    scores = np.asarray(pol.scores(jnp.concatenate([now, remembered]), pos, seen))[0]
    np.testing.assert_allclose(scores[:4], [0, 0.2, 0, 0.5])  # max(decay x old, new)
    assert np.asarray(get_policy("snapkv", window=2, kernel=1).carry(now, scores)).max() == 0


def test_multiwindow_observes_a_wider_window_than_it_keeps():
    pol = get_policy("multiwindow", window=2, observe_window=4)
    q_pos = jnp.arange(8)[None]
    w = np.asarray(pol.observe(q_pos, q_pos < 7, jnp.asarray([7])))
    np.testing.assert_allclose(w[0, 0], [0, 0, 0, 0.25, 0.25, 0.25, 0.25, 0])  # last 4 valid
    assert w.shape[0] == 2 and not w[1].any()  # the memory row observes nothing
    assert pol.protected_tokens == 2 + pol.sinks  # only `window` is kept
    with pytest.raises(ValueError, match="observe_window"):
        get_policy("multiwindow", observe_window=-1)


def test_adakv_shares_the_layer_budget_across_heads_like_kvpress(tensors):
    pol = get_policy("adakv", window=6, kernel=5, alpha=0.2, schedule="end")
    attn = attention_np(*tensors[:2])
    ours = run(pol, tensors, TARGETS)
    for r in range(B):
        n, target = LENGTHS[r], TARGETS[r]
        # kvpress AdaKVPress.compress: window scored max + 1, per-head top int(a n) forced,
        # then the bottom kv (n - target) entries over all heads removed
        scores = np.stack([snap_scores_np(attn, r, h, 6, 5) for h in range(KV)])
        scores = np.concatenate([scores, np.full((KV, 6), scores.max() + 1)], axis=1)
        safe = int(target * 0.2)
        for h in range(KV):
            scores[h, np.argsort(-scores[h], kind="stable")[:safe]] = np.finfo(np.float64).max
        flat = np.argsort(-scores.reshape(-1), kind="stable")[: KV * target]
        for h in range(KV):
            want = {int(i % n) for i in flat if i // n == h}
            assert ours[(r, h)] == want, (r, h)
        assert sum(len(ours[(r, h)]) for h in range(KV)) == KV * target
    assert len({len(s) for s in ours.values()}) > 1  # heads really got different budgets


def test_pyramidkv_budgets_shrink_with_depth_and_average_to_the_uniform_budget():
    layers = [pyramid_budget(1000, 250, 8, 20, i, 8) for i in range(8)]
    assert layers == sorted(layers, reverse=True) and layers[0] > 250 > layers[-1]
    assert abs(np.mean(layers) - 250) <= 1  # the total over layers is the uniform one
    assert pyramid_budget(1000, 250, 16, 20, 0, 8) == 250  # min_num < window: uniform (kvpress)
    pol = get_policy("pyramidkv", window=4)
    targets = pol.layer_targets(np.array([250, 50]), np.array([1000, 200]), 8)
    assert targets.shape == (8, 2) and targets[0, 0] == layers[0]


def test_pyramidkv_layer_selection_is_snapkv_at_the_layer_budget(tensors):
    attn = attention_np(*tensors[:2])
    pyr = run(get_policy("pyramidkv", window=6, schedule="end"), tensors, TARGETS + 4)
    for (r, h), kept in pyr.items():
        n = LENGTHS[r]
        s = snap_scores_np(attn, r, h, 6, 5)
        assert kept == top(s, TARGETS[r] + 4 - 6) | set(range(n - 6, n))
