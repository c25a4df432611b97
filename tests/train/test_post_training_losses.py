"""MPO, the BCO delta, GRPO advantages and the GRPO loss against plain-numpy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andesvl_jax.train.grpo import GRPOConfig, group_advantages, grpo_loss, k3_kl
from andesvl_jax.train.mpo import BCODelta, MPOConfig, mpo_loss
from andesvl_jax.train.sequence_logprobs import sequence_logprob, token_logprobs

TOL = {"rtol": 1e-6, "atol": 1e-6}


def _f32(rng, *shape, scale=1.0, loc=0.0):
    return (loc + scale * rng.standard_normal(shape)).astype(np.float32)


def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


# ---------------------------------------------------------------- sequence log-probs


def _summed_logprobs(logits, targets, t):
    return token_logprobs(logits, targets, t).sum()


def test_token_logprobs_match_numpy_log_softmax_even_for_huge_logits():
    rng = np.random.default_rng(0)
    logits = _f32(rng, 2, 5, 11, scale=3.0)
    logits[0, 0] += 3e4  # a naive exp() overflows in float32
    targets = rng.integers(0, 11, size=(2, 5))
    for temperature in (1.0, 0.7):
        z = logits.astype(np.float64) / temperature
        ref = z - (
            z.max(-1, keepdims=True)
            + np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
        )
        ref = np.take_along_axis(ref, targets[..., None], -1)[..., 0]
        got = token_logprobs(jnp.asarray(logits), jnp.asarray(targets), temperature)
        assert got.dtype == jnp.float32 and got.shape == (2, 5)
        np.testing.assert_allclose(np.asarray(got), ref, **TOL)
        # d/dlogits of sum(log p[target]) = (onehot - softmax) / temperature
        total = functools.partial(_summed_logprobs, targets=jnp.asarray(targets), t=temperature)
        grad = jax.grad(total)(jnp.asarray(logits))
        softmax = np.exp(z - z.max(-1, keepdims=True))
        softmax /= softmax.sum(-1, keepdims=True)
        onehot = np.eye(11)[targets]
        np.testing.assert_allclose(np.asarray(grad), (onehot - softmax) / temperature, **TOL)
    mask = (rng.random((2, 5)) < 0.6).astype(np.float32)
    seq = sequence_logprob(jnp.asarray(ref, jnp.float32), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(seq), (ref * mask).sum(-1), **TOL)


def test_token_logprobs_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        token_logprobs(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32))


# ---------------------------------------------------------------- MPO


def np_mpo(pc, pr, rc, rr, n_chosen, delta, cfg):
    r_c, r_r = cfg.beta * (pc - rc), cfg.beta * (pr - rr)
    dpo = -np_log_sigmoid(r_c - r_r)
    bco = -np_log_sigmoid(r_c - delta) - np_log_sigmoid(-(r_r - delta))
    sft = -pc / n_chosen
    loss = np.mean(cfg.dpo_weight * dpo + cfg.bco_weight * bco + cfg.sft_weight * sft)
    return loss, r_c, r_r


def _pairs(rng, b):
    n_chosen = rng.integers(3, 40, size=b).astype(np.float32)
    pc = (-n_chosen * rng.uniform(0.5, 2.0, b)).astype(np.float32)
    pr = (-rng.uniform(10, 80, b)).astype(np.float32)
    rc = (pc + _f32(rng, b, scale=2.0)).astype(np.float32)
    rr = (pr + _f32(rng, b, scale=2.0)).astype(np.float32)
    return pc, pr, rc, rr, n_chosen


def test_mpo_loss_matches_numpy_and_metrics():
    rng = np.random.default_rng(1)
    pc, pr, rc, rr, n = _pairs(rng, 6)
    cfg, delta = MPOConfig(), 0.037
    loss, m = mpo_loss(*map(jnp.asarray, (pc, pr, rc, rr, n)), delta, cfg)
    args64 = [x.astype(np.float64) for x in (pc, pr, rc, rr, n)]
    ref, r_c, r_r = np_mpo(*args64, delta, cfg)
    np.testing.assert_allclose(float(loss), ref, **TOL)
    np.testing.assert_allclose(float(m["reward_accuracy"]), np.mean(r_c > r_r), **TOL)
    np.testing.assert_allclose(float(m["reward_margin"]), np.mean(r_c - r_r), **TOL)
    np.testing.assert_allclose(
        float(m["reward_batch_mean"]), np.concatenate([r_c, r_r]).mean(), **TOL
    )
    np.testing.assert_allclose(float(m["reward_sum"]), r_c.sum() + r_r.sum(), **TOL)
    assert float(m["reward_count"]) == 12.0 and float(m["pairs"]) == 6.0
    np.testing.assert_allclose(float(m["loss_sum"]) / 6.0, ref, **TOL)
    np.testing.assert_allclose(
        0.8 * float(m["dpo_loss"]) + 0.2 * float(m["bco_loss"]) + float(m["sft_loss"]), ref, **TOL
    )


def test_mpo_gradient_matches_analytic_and_delta_is_detached():
    rng = np.random.default_rng(2)
    pc, pr, rc, rr, n = _pairs(rng, 5)
    cfg, delta = MPOConfig(), -0.21
    b = pc.shape[0]

    def loss_of(pc_, pr_, d):
        return mpo_loss(pc_, pr_, jnp.asarray(rc), jnp.asarray(rr), jnp.asarray(n), d, cfg)[0]

    g_pc, g_pr, g_delta = jax.grad(loss_of, argnums=(0, 1, 2))(
        jnp.asarray(pc), jnp.asarray(pr), jnp.asarray(delta, jnp.float32)
    )
    assert float(g_delta) == 0.0
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    r_c = cfg.beta * (pc.astype(np.float64) - rc)
    r_r = cfg.beta * (pr.astype(np.float64) - rr)
    ref_pc = (-0.8 * cfg.beta * sig(r_r - r_c) - 0.2 * cfg.beta * sig(delta - r_c) - 1.0 / n) / b
    ref_pr = (0.8 * cfg.beta * sig(r_r - r_c) + 0.2 * cfg.beta * sig(r_r - delta)) / b
    np.testing.assert_allclose(np.asarray(g_pc), ref_pc, **TOL)
    np.testing.assert_allclose(np.asarray(g_pr), ref_pr, **TOL)


def test_bco_delta_running_mean_over_batches_uses_previous_batches_only():
    rng = np.random.default_rng(3)
    cfg = MPOConfig()
    step = jax.jit(functools.partial(mpo_loss, cfg=cfg))
    state = BCODelta.init()
    batch_means = []
    for k, b in enumerate((4, 7, 3, 5)):  # unequal sizes: each batch-mean counts once
        pc, pr, rc, rr, n = _pairs(rng, b)
        delta = state.value()
        expected_delta = np.mean(batch_means) if batch_means else 0.0
        np.testing.assert_allclose(float(delta), expected_delta, **TOL)
        loss, m = step(*map(jnp.asarray, (pc, pr, rc, rr, n)), delta)
        args64 = [x.astype(np.float64) for x in (pc, pr, rc, rr, n)]
        ref, r_c, r_r = np_mpo(*args64, expected_delta, cfg)
        np.testing.assert_allclose(float(loss), ref, **TOL, err_msg=f"batch {k}")
        batch_means.append(np.concatenate([r_c, r_r]).mean())
        state = jax.jit(BCODelta.update)(state, m["reward_sum"], m["reward_count"])
    assert int(state.count) == 4
    np.testing.assert_allclose(float(state.value()), np.mean(batch_means), **TOL)
    # An empty batch leaves the state alone.
    same = state.update(jnp.float32(0.0), jnp.float32(0.0))
    assert int(same.count) == 4 and float(same.sum) == float(state.sum)


# ---------------------------------------------------------------- GRPO advantages


def np_group_advantages(rewards, g, eps, ddof):
    r = rewards.astype(np.float64).reshape(-1, g)
    return ((r - r.mean(1, keepdims=True)) / (r.std(1, ddof=ddof, keepdims=True) + eps)).ravel()


@pytest.mark.parametrize("ddof", [1, 0])
def test_group_advantages_match_numpy(ddof):
    rng = np.random.default_rng(4)
    rewards = rng.random(3 * 8).astype(np.float32)
    rewards[8:16] = 0.1  # an all-equal group
    got = np.asarray(group_advantages(jnp.asarray(rewards), 8, 1e-4, std_ddof=ddof))
    np.testing.assert_allclose(got, np_group_advantages(rewards, 8, 1e-4, ddof), **TOL)
    assert np.all(got[8:16] == 0.0)


def test_group_advantages_rejects_ragged_groups():
    with pytest.raises(ValueError, match="n_prompts"):
        group_advantages(jnp.zeros(10), 8)


# ---------------------------------------------------------------- GRPO loss


def np_grpo(logp, old, ref, adv, mask, cfg):
    eh = cfg.epsilon if cfg.epsilon_high is None else cfg.epsilon_high
    ratio = np.exp(logp - old)
    a = adv[:, None]
    surrogate = np.minimum(ratio * a, np.clip(ratio, 1 - cfg.epsilon, 1 + eh) * a)
    kl = np.exp(ref - logp) - (ref - logp) - 1
    per_token = -(surrogate - cfg.beta * kl)
    if cfg.aggregation == "token":
        loss = (per_token * mask).sum() / mask.sum()
    else:
        lengths = mask.sum(1)
        keep = lengths > 0
        loss = ((per_token * mask).sum(1)[keep] / lengths[keep]).mean()
    clipped = ((ratio < 1 - cfg.epsilon) & (a < 0)) | ((ratio > 1 + eh) & (a > 0))
    return loss, {
        "kl": (kl * mask).sum() / mask.sum(),
        "ratio": (ratio * mask).sum() / mask.sum(),
        "clip_fraction": (clipped * mask).sum() / mask.sum(),
    }


def _rollout(rng, b=8, t=9):
    logp = -(_f32(rng, b, t, scale=1.0, loc=2.0) ** 2)
    old = (logp + _f32(rng, b, t, scale=0.3)).astype(np.float32)
    ref = (logp + _f32(rng, b, t, scale=0.3)).astype(np.float32)
    lengths = rng.integers(1, t + 1, size=b)
    lengths[3] = 0  # a fully padded row
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    return logp, old, ref, mask


@pytest.mark.parametrize(
    "cfg",
    [
        GRPOConfig(group_size=4),
        GRPOConfig(group_size=4, aggregation="sequence"),
        GRPOConfig(group_size=4, epsilon=0.1, epsilon_high=0.28, beta=0.0),
    ],
    ids=["token", "sequence", "asymmetric-no-kl"],
)
def test_grpo_loss_matches_numpy(cfg):
    rng = np.random.default_rng(5)
    logp, old, ref, mask = _rollout(rng)
    rewards = rng.random(8).astype(np.float32)
    adv = np.asarray(group_advantages(jnp.asarray(rewards), cfg.group_size))
    ref_arg = None if cfg.beta == 0 else jnp.asarray(ref)
    fn = jax.jit(functools.partial(grpo_loss, cfg=cfg))
    loss, m = fn(jnp.asarray(logp), jnp.asarray(old), ref_arg, jnp.asarray(adv), jnp.asarray(mask))
    f64 = lambda x: x.astype(np.float64)  # noqa: E731
    ref_loss, ref_m = np_grpo(f64(logp), f64(old), f64(ref), f64(adv), f64(mask), cfg)
    np.testing.assert_allclose(float(loss), ref_loss, **TOL)
    np.testing.assert_allclose(float(m["loss_sum"]) / float(m["normaliser"]), ref_loss, **TOL)
    np.testing.assert_allclose(float(m["ratio"]), ref_m["ratio"], **TOL)
    np.testing.assert_allclose(float(m["clip_fraction"]), ref_m["clip_fraction"], **TOL)
    if cfg.beta:
        np.testing.assert_allclose(float(m["kl"]), ref_m["kl"], **TOL)
    assert 0.0 < float(m["clip_fraction"]) < 1.0  # the fixture exercises both regimes


def test_grpo_needs_reference_when_beta_positive():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="ref_token_logp"):
        grpo_loss(x, x, None, jnp.zeros(2), x, GRPOConfig(beta=0.04))


def test_grpo_gradient_is_exactly_zero_for_equal_reward_groups():
    rng = np.random.default_rng(6)
    logp, old, _, mask = _rollout(rng)
    cfg = GRPOConfig(group_size=4, beta=0.0)
    rewards = np.array([0.1] * 4 + [0.0, 1.0, 1.0, 0.3], np.float32)
    adv = group_advantages(jnp.asarray(rewards), 4)

    def loss_of(lp):
        return grpo_loss(lp, jnp.asarray(old), None, adv, jnp.asarray(mask), cfg)[0]

    grad = np.asarray(jax.grad(loss_of)(jnp.asarray(logp)))
    assert np.all(grad[:4] == 0.0)
    assert np.any(grad[4:] != 0.0)
    all_equal = jnp.asarray(np.full(8, 0.7, np.float32))
    adv0 = group_advantages(all_equal, 4)
    assert np.all(np.asarray(adv0) == 0.0)
    grad0 = jax.grad(
        lambda lp: grpo_loss(lp, jnp.asarray(old), None, adv0, jnp.asarray(mask), cfg)[0]
    )
    assert np.all(np.asarray(grad0(jnp.asarray(logp))) == 0.0)


def test_k3_kl_is_zero_when_policy_equals_reference():
    rng = np.random.default_rng(7)
    logp, _, _, mask = _rollout(rng)
    lp = jnp.asarray(logp)
    assert np.all(np.asarray(k3_kl(lp, lp)) == 0.0)
    cfg = GRPOConfig(group_size=4, beta=0.04)
    zero_adv = jnp.zeros(8)
    loss, m = grpo_loss(lp, lp, lp, zero_adv, jnp.asarray(mask), cfg)
    assert float(m["kl"]) == 0.0 and float(loss) == 0.0
    grad = jax.grad(lambda x: grpo_loss(x, lp, lp, zero_adv, jnp.asarray(mask), cfg)[0])(lp)
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-7)
    # k3 is non-negative away from equality.
    assert np.all(np.asarray(k3_kl(lp, lp + 0.5 * jnp.asarray(_f32(rng, *logp.shape)))) >= 0.0)


def test_clipping_cuts_the_gradient_only_in_the_direction_of_the_clip():
    cfg = GRPOConfig(group_size=2, epsilon=0.2, beta=0.0)
    ratios = np.array([1.5, 0.5, 1.5, 0.5, 1.1, 0.9], np.float64)
    adv = np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0], np.float32)
    old = np.full((6, 1), -1.0, np.float32)
    logp = (old + np.log(ratios)[:, None]).astype(np.float32)
    mask = np.ones((6, 1), np.float32)

    def loss_of(lp):
        return grpo_loss(lp, jnp.asarray(old), None, jnp.asarray(adv), jnp.asarray(mask), cfg)

    grad = np.asarray(jax.grad(lambda lp: loss_of(lp)[0])(jnp.asarray(logp)))[:, 0]
    # ratio above 1+eps with A>0 and below 1-eps with A<0: clipped, no gradient.
    assert grad[0] == 0.0 and grad[1] == 0.0
    # The other directions and the inside of the range keep d(-rho*A)/dlogp / N = -rho*A/N.
    expected = -ratios[2:] * adv[2:] / 6.0
    np.testing.assert_allclose(grad[2:], expected, **TOL)
    np.testing.assert_allclose(float(loss_of(jnp.asarray(logp))[1]["clip_fraction"]), 2 / 6, **TOL)
    # epsilon_high widens only the upper side: ratio 1.5 with A>0 is inside [0.8, 1.6].
    wide = GRPOConfig(group_size=2, epsilon=0.2, epsilon_high=0.6, beta=0.0)
    g_wide = jax.grad(
        lambda lp: grpo_loss(lp, jnp.asarray(old), None, jnp.asarray(adv), jnp.asarray(mask), wide)[
            0
        ]
    )(jnp.asarray(logp))
    np.testing.assert_allclose(float(g_wide[0, 0]), -1.5 / 6.0, **TOL)
    assert float(g_wide[1, 0]) == 0.0


def test_grpo_config_validates():
    with pytest.raises(ValueError, match="aggregation"):
        GRPOConfig(aggregation="bogus")
    assert GRPOConfig().clip_high == 0.2 and GRPOConfig(epsilon_high=0.28).clip_high == 0.28
