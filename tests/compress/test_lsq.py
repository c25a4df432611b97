"""LSQ fake quantization: forward and gradients against a numpy reference (inside the range and at
both clips, with the gradient scale 1/sqrt(N·Q_P)), fp16-exact steps, jit/scan/remat."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andesvl_jax.compress.lsq import (
    absmax_weight_init,
    act_codes,
    dequantize_codes,
    lsq_grad_scale,
    lsq_quantize,
    mse_weight_init,
    weight_codes,
    weight_range,
)


def reference(v, s, qn, qp, g):
    """numpy LSQ: (v̂, dv̂/dv, dv̂/ds) elementwise (Esser et al. eqs. 1-3, step gradient scaled)."""
    r = v / s
    vhat = np.round(np.clip(r, -qn, qp)) * s
    inside = (r > -qn) & (r < qp)
    dv = inside.astype(np.float64)
    ds = np.where(r <= -qn, -qn, np.where(r >= qp, qp, -r + np.round(r))) * g
    return vhat, dv, ds


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_lsq_forward_and_gradients_match_numpy(bits):
    qn, qp = weight_range(bits, zero_point=False)
    s = 0.0625 * 3  # fp16-exact
    rng = np.random.default_rng(bits)
    inside = rng.uniform(-qn + 0.01, qp - 0.01, 64) * s
    below = -qn * s - rng.uniform(0.01, 3, 8) * s
    above = qp * s + rng.uniform(0.01, 3, 8) * s
    v = np.concatenate([inside, below, above]).astype(np.float32)
    ct = rng.standard_normal(v.shape).astype(np.float32)  # an arbitrary upstream gradient
    g = lsq_grad_scale(v.size, qp)

    def loss(v, s):
        return jnp.sum(lsq_quantize(v, s, qn, qp, g) * ct)

    vhat = lsq_quantize(jnp.asarray(v), jnp.float32(s), qn, qp, g)
    dv, ds = jax.grad(loss, argnums=(0, 1))(jnp.asarray(v), jnp.float32(s))
    ref_v, ref_dv, ref_ds = reference(v.astype(np.float64), s, qn, qp, g)
    np.testing.assert_allclose(vhat, ref_v, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dv, ct * ref_dv, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ds, np.sum(ct * ref_ds), rtol=1e-5)
    # each region contributes: the clips give exactly -Q_N and Q_P per element
    _, _, ds_below = reference(below.astype(np.float64), s, qn, qp, g)
    _, _, ds_above = reference(above.astype(np.float64), s, qn, qp, g)
    assert np.allclose(ds_below, -qn * g) and np.allclose(ds_above, qp * g)


def test_gradient_scale_is_one_over_sqrt_n_qp():
    v = jnp.linspace(-1, 1, 100)
    qn, qp = 8, 7

    def ds(g):
        return jax.grad(lambda s: jnp.sum(lsq_quantize(v, s, qn, qp, g)))(jnp.float32(0.1))

    assert lsq_grad_scale(100, 7) == pytest.approx(1 / np.sqrt(700))
    np.testing.assert_allclose(ds(lsq_grad_scale(100, 7)), ds(1.0) / np.sqrt(700), rtol=1e-6)


def test_forward_uses_fp16_rounded_step():
    s = np.float32(0.1)  # not an fp16 value
    s16 = np.float32(np.float16(s))
    assert s16 != s
    v = jnp.asarray([0.35, -0.72, 0.1])
    np.testing.assert_array_equal(
        lsq_quantize(v, jnp.float32(s), 8, 7, 1.0), np.round(np.asarray(v) / s16) * s16
    )


@pytest.mark.parametrize("zero_point", [False, True])
def test_group_weight_step_gradient_uses_group_size(zero_point):
    """ŵ = codes · s per group of 32 rows: the step gradient is the LSQ one with N = 32."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 3)).astype(np.float32)
    bits = 3
    s0, z0 = absmax_weight_init(w, bits, 32, zero_point)
    z0 = None if z0 is None else np.asarray(z0)
    s = np.asarray(s0) * 0.7  # force some clipping
    s = np.float32(np.float16(s))
    ct = rng.standard_normal(w.shape).astype(np.float32)

    def loss(scale):
        c, sw = weight_codes(jnp.asarray(w), scale, z0, bits, 32)
        return jnp.sum(dequantize_codes(c, sw) * ct)

    got = jax.grad(loss)(jnp.asarray(s))
    qn, qp = weight_range(bits, zero_point)
    g = lsq_grad_scale(32, qp)
    want = np.zeros_like(s, np.float64)
    for grp in range(2):
        rows = slice(32 * grp, 32 * grp + 32)
        for n in range(3):
            lo, hi = (qn, qp) if not zero_point else (z0[grp, n], qp - z0[grp, n])
            _, _, ds = reference(w[rows, n].astype(np.float64), s[grp, n], lo, hi, g)
            want[grp, n] = np.sum(ct[rows, n] * ds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_activation_step_gradient_uses_feature_count():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 16)), jnp.float32)
    s = jnp.float32(0.015625)

    def loss(scale):
        c, sx = act_codes(x, scale, None, 8)
        return jnp.sum(c * sx)

    _, _, ds = reference(np.asarray(x, np.float64), 0.015625, 127, 127, lsq_grad_scale(16, 127))
    np.testing.assert_allclose(jax.grad(loss)(s), np.sum(ds), rtol=1e-5)


def test_mse_init_is_no_worse_than_absmax():
    w = jnp.asarray(np.random.default_rng(2).standard_t(3, (128, 8)), jnp.float32)

    def err(init):
        s, z = init(w, 3, 32, False)
        c, sw = weight_codes(w, s, z, 3, 32)
        return float(jnp.sum((dequantize_codes(c, sw) - w) ** 2))

    assert err(mse_weight_init) < err(absmax_weight_init)


def test_works_inside_jit_scan_and_remat():
    """Gradients through a scanned, rematerialised LSQ layer stack equal the unrolled eager ones."""
    rng = np.random.default_rng(3)
    ws = jnp.asarray(rng.standard_normal((3, 32, 32)) * 0.2, jnp.float32)
    scales = jnp.asarray(np.float16(np.full((3, 1, 32), 0.05)), jnp.float32)
    x0 = jnp.asarray(rng.standard_normal((4, 32)), jnp.float32)

    def layer(x, w, s):
        c, sw = weight_codes(w, s, None, 4, None)
        return jnp.tanh(x @ dequantize_codes(c, sw))

    def scanned(ws, scales):
        body = jax.checkpoint(lambda x, p: (layer(x, *p), None))
        return jnp.sum(jax.lax.scan(body, x0, (ws, scales))[0] ** 2)

    def unrolled(ws, scales):
        x = x0
        for i in range(3):
            x = layer(x, ws[i], scales[i])
        return jnp.sum(x**2)

    got = jax.jit(jax.grad(scanned, argnums=(0, 1)))(ws, scales)
    want = jax.grad(unrolled, argnums=(0, 1))(ws, scales)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(got[1]).max()) > 0
