"""eval/paired_stats.py against hand computations and numpy/scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from andesvl_jax.eval.paired_stats import (
    bootstrap_mean,
    mcnemar,
    mde,
    paired_bootstrap,
    variance_components,
)


def test_mcnemar_hand_computed():
    # 10 pairs right only under a, 2 only under b, 88 concordant.
    a = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 38)
    b = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 38)
    out = mcnemar(a, b)
    assert (out["a_only"], out["b_only"], out["n"]) == (10, 2, 100)
    # exact two-sided: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert out["p"] == pytest.approx(158 / 4096)
    assert out["p"] == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)
    se = math.sqrt(12 - 8**2 / 100) / 100
    assert out["diff"] == pytest.approx(0.08)
    assert out["ci"] == pytest.approx((0.08 - 1.959964 * se, 0.08 + 1.959964 * se), rel=1e-5)
    same = mcnemar(a, a)
    assert same["p"] == 1.0 and same["ci"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        mcnemar(a, a[:50])


def test_bootstrap_matches_the_analytic_standard_error():
    rng = np.random.default_rng(0)
    x = (rng.random(800) < 0.7).astype(float)
    out = bootstrap_mean(x, n_boot=4000, seed=1)
    assert out["mean"] == pytest.approx(x.mean())
    assert out["se"] == pytest.approx(x.std(ddof=1) / math.sqrt(x.size), rel=0.08)
    lo, hi = out["ci"]
    assert lo < x.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * out["se"], rel=0.1)
    assert bootstrap_mean(x, seed=1) == bootstrap_mean(x, seed=1)  # seeded: reproducible


def test_paired_bootstrap_resamples_seeds_too():
    rng = np.random.default_rng(2)
    # Three seeds that differ by a large seed effect: the interval must be wider than a
    # question-only bootstrap of the pooled data would be.
    base = (rng.random((3, 500)) < 0.6).astype(float)
    shifted = np.where(rng.random((3, 500)) < np.array([[0.0], [0.3], [0.6]]), 1.0, base)
    out = paired_bootstrap(shifted, base, seed=0)
    pooled = bootstrap_mean((shifted - base).ravel(), seed=0)
    assert out["mean"] == pytest.approx((shifted - base).mean())
    assert out["se"] > 1.5 * pooled["se"]
    zero = paired_bootstrap(base, base)
    assert zero["mean"] == 0.0 and zero["ci"] == (0.0, 0.0)


def test_variance_components_hand_computed():
    d = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    # grand 1/2; rows 2/3, 1/3; columns 1/2, 0, 1 -> MS_seed 1/6, MS_q 1/2, MS_e (1/3) / 2 = 1/6
    out = variance_components(d)
    assert out["var_seed"] == pytest.approx(0.0)
    assert out["var_question"] == pytest.approx((1 / 2 - 1 / 6) / 2)
    assert out["var_residual"] == pytest.approx(1 / 6)
    one_seed = variance_components(d[:1])
    assert one_seed["var_seed"] is None and one_seed["var_question"] == pytest.approx(1 / 3)


def test_variance_components_recover_simulated_components():
    rng = np.random.default_rng(3)
    s, q = 60, 600
    d = rng.normal(0, 0.1, (s, 1)) + rng.normal(0, 0.3, (1, q)) + rng.normal(0, 0.2, (s, q))
    out = variance_components(d)
    assert out["var_seed"] == pytest.approx(0.01, rel=0.4)
    assert out["var_question"] == pytest.approx(0.09, rel=0.15)
    assert out["var_residual"] == pytest.approx(0.04, rel=0.05)


def test_mde_hand_computed():
    comps = {"var_seed": 0.0004, "var_question": 0.2, "var_residual": 0.05}
    z = 1.959964 + 0.841621  # z_{0.975} + z_{0.80}
    expected = z * math.sqrt(0.0004 / 3 + 0.2 / 500 + 0.05 / 1500)
    assert mde(comps, seeds=3, questions=500) == pytest.approx(expected, rel=1e-5)
    # More questions shrink only the question and residual terms.
    assert mde(comps, 3, 5000) < mde(comps, 3, 500)
    assert mde({**comps, "var_seed": None}, 1, 500) == pytest.approx(
        z * math.sqrt(0.2 / 500 + 0.05 / 500), rel=1e-5
    )
