"""Pruning: masks, Wanda and SparseGPT against small numpy references, and on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from compress_testing import tiny_model, token_batch

from andesvl_jax.compress import quantize_model
from andesvl_jax.compress.masks import check_mask, mask_from_scores, parse_pattern
from andesvl_jax.compress.prune import (
    PRUNERS,
    SparsityRule,
    magnitude,
    model_masks,
    prune_model,
    sparse_quant_rules,
    sparsegpt,
    wanda,
)


def _correlated(seed=0, m=512, k=64, n=24):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(m, 8))
    x = base @ rng.normal(size=(8, k)) + 0.1 * rng.normal(size=(m, k))  # strongly correlated
    w = rng.normal(size=(k, n))
    return x, w


def _hessian(x):
    return 2.0 * x.T @ x / x.shape[0]


@pytest.mark.parametrize("spec,n,m", [("1:4", 1, 4), ("2:4", 2, 4), ("2:8", 2, 8)])
def test_nm_masks_exact(spec, n, m):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(64, 10))
    mask = mask_from_scores(scores, parse_pattern(spec))
    blocks = mask.reshape(64 // m, m, 10)
    assert np.all(blocks.sum(1) == n)
    # the kept ones are the n largest of each block
    sb = scores.reshape(64 // m, m, 10)
    kept_min = np.where(blocks, sb, np.inf).min(1)
    pruned_max = np.where(blocks, -np.inf, sb).max(1)
    assert np.all(kept_min > pruned_max)
    check_mask(mask, (64, 10), parse_pattern(spec), "t")


def test_bad_patterns_are_named():
    with pytest.raises(ValueError, match="3:4.*cannot be stored"):
        parse_pattern("3:4", "llm/layers/0/attn/q")
    with pytest.raises(ValueError, match="llm/x: mask shape"):
        check_mask(np.ones((4, 4), bool), (8, 4), parse_pattern("1:4"), "llm/x")
    with pytest.raises(ValueError, match="llm/x: mask is not 1:4"):
        check_mask(np.ones((8, 4), bool), (8, 4), parse_pattern("1:4"), "llm/x")


def test_wanda_matches_numpy_reference():
    x, w = _correlated()
    _, mask = wanda(w, _hessian(x), parse_pattern(0.5))
    # reference (Sun et al.): W_ref [out, in], metric |W|·‖X_j‖₂, prune the lowest half of each row
    w_ref = w.T
    metric = np.abs(w_ref) * np.linalg.norm(x, axis=0)[None, :]
    ref = np.ones_like(w_ref, bool)
    idx = np.argsort(metric, axis=1)[:, : w_ref.shape[1] // 2]
    np.put_along_axis(ref, idx, False, axis=1)
    np.testing.assert_array_equal(mask, ref.T)


def _sparsegpt_reference(w_ref, h, sparsity=None, prunen=0, prunem=0, blocksize=16, percdamp=0.01):
    """Transcription of the SparseGPT reference (W [out, in]) without lazy batching: every column's
    error is applied to all later columns at once."""
    w = w_ref.copy()
    cols = w.shape[1]
    h = h + percdamp * np.mean(np.diag(h)) * np.eye(cols)
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T
    mask = np.zeros_like(w, bool)  # True = pruned
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        if not prunen:
            tmp = w[:, i1:i2] ** 2 / np.diag(hinv)[i1:i2][None, :] ** 2
            thresh = np.sort(tmp.flatten())[int(tmp.size * sparsity)]
            mask[:, i1:i2] = tmp < thresh
        for i in range(i1, i2):
            if prunen and (i - i1) % prunem == 0:
                tmp = w[:, i : i + prunem] ** 2 / np.diag(hinv)[i : i + prunem][None, :] ** 2
                idx = np.argsort(tmp, axis=1)[:, :prunen]
                np.put_along_axis(mask[:, i : i + prunem], idx, True, axis=1)
            q = w[:, i].copy()
            q[mask[:, i]] = 0
            err = (w[:, i] - q) / hinv[i, i]
            w[:, i:] -= np.outer(err, hinv[i, i:])
            w[:, i] = q
    return w, ~mask


@pytest.mark.parametrize("spec", [0.75, "2:4", "1:4"])
def test_sparsegpt_matches_reference(spec):
    x, w = _correlated(2)
    h = _hessian(x)
    pattern = parse_pattern(spec)
    w_ours, mask = sparsegpt(w, h, pattern, block=16)
    if pattern.kind == "nm":
        w_ref, mref = _sparsegpt_reference(w.T, h, prunen=pattern.m - pattern.n, prunem=pattern.m)
    else:
        w_ref, mref = _sparsegpt_reference(w.T, h, sparsity=pattern.sparsity)
    np.testing.assert_array_equal(mask, mref.T)
    np.testing.assert_allclose(w_ours, w_ref.T, rtol=1e-9, atol=1e-9)
    assert abs(1 - mask.mean() - pattern.sparsity) < 0.02


@pytest.mark.parametrize("spec", [0.75, "1:4", "2:8"])
def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda(spec):
    x, w = _correlated(3)
    h = _hessian(x)
    pattern = parse_pattern(spec)

    def err(method):
        w2, _ = PRUNERS[method](w, h, pattern)
        return np.sum((x @ w - x @ w2) ** 2) / np.sum((x @ w) ** 2)

    e_mag, e_sgpt = err("magnitude"), err("sparsegpt")
    assert e_sgpt < 0.5 * e_mag, (e_sgpt, e_mag)
    assert e_sgpt < err("wanda")


def test_magnitude_keeps_largest_per_column():
    w = np.random.default_rng(4).normal(size=(32, 5))
    w2, mask = magnitude(w, None, parse_pattern(0.75))
    assert np.all(mask.sum(0) == 8)
    assert np.all(np.abs(w2[~mask]) == 0)
    for c in range(5):
        assert np.abs(w[mask[:, c], c]).min() >= np.abs(w[~mask[:, c], c]).max()


def test_prune_model_rules_and_sequential_calibration():
    """SparseGPT on a scanned model (Wanda shares the calibration path: one Hessian per layer)."""
    model = tiny_model(scan=True)
    quantize_model(model, sparse_quant_rules(4, 64))
    batch = token_batch(0, batch=2, length=24)
    rules = (
        SparsityRule(r"^llm/layers/\d+/attn/", "2:4"),
        SparsityRule(r"^llm/layers/\d+/mlp/", 0.75),
    )
    patterns = prune_model(model, rules, "sparsegpt", run=lambda m: m(batch))
    masks = model_masks(model)
    assert set(masks) == set(patterns)
    for name, mask in masks.items():
        want = 0.5 if "/attn/" in name else 0.75
        assert abs(1 - mask.mean() - want) < 0.02, name
        check_mask(mask, mask.shape, patterns[name], name)
    out = np.asarray(model(batch)[0])
    assert np.all(np.isfinite(out))


def test_prune_model_errors_name_the_rule():
    model = tiny_model()
    quantize_model(model, sparse_quant_rules(4, 64))
    with pytest.raises(ValueError, match="vision.*matches no"):
        prune_model(model, (SparsityRule("^vision/", 0.5),))
    with pytest.raises(ValueError, match="wanda needs calibration"):
        prune_model(model, "u50", "wanda")
