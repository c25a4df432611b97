"""Low-bit weight matmul (A16 and A8), Pallas (interpret) vs the jnp reference, dispatch."""

import jax.numpy as jnp
import numpy as np
import pytest
from andesvl_jax.kernels import (
    quantize_activations,
    quantize_weight,
    quantized_matmul,
    quantized_matmul_a8,
)
from andesvl_jax.kernels.quant_matmul import (
    quantized_matmul_a8_pallas,
    quantized_matmul_a8_ref,
    quantized_matmul_pallas,
    quantized_matmul_ref,
)
from kernel_testing import assert_close

M, K, N = 5, 200, 70  # none a multiple of any tile; K not a multiple of any group
TILES = dict(block_n=32, block_k=128)


def weights(rng, bits, group, zero_point, k=K, n=N):
    return quantize_weight(
        jnp.asarray(rng.normal(size=(k, n)), jnp.float32), bits, group, zero_point
    )


@pytest.mark.parametrize("zero_point", [False, True])
@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_a16_matches_reference(bits, group, zero_point, rng):
    pw = weights(rng, bits, group, zero_point)
    x = jnp.asarray(rng.normal(size=(M, K)), jnp.float32)
    assert_close(quantized_matmul_pallas(x, pw, **TILES), quantized_matmul_ref(x, pw))


@pytest.mark.parametrize("bits", [4, 3])
def test_a16_bfloat16(bits, rng):
    pw = weights(rng, bits, 64, True)
    x = jnp.asarray(rng.normal(size=(M, K)), jnp.bfloat16)
    out = quantized_matmul_pallas(x, pw, **TILES)
    assert out.dtype == jnp.bfloat16
    assert_close(out, quantized_matmul_ref(x, pw), jnp.bfloat16)


@pytest.mark.parametrize("compute", [jnp.float32, jnp.bfloat16])
def test_a8_matches_reference(compute, rng):
    pw = weights(rng, 4, 128, False)
    x_q, x_scale = quantize_activations(jnp.asarray(rng.normal(size=(M, K)), jnp.float32))
    kw = dict(compute_dtype=compute, out_dtype=jnp.float32)
    assert_close(
        quantized_matmul_a8_pallas(x_q, x_scale, pw, **kw, **TILES),
        quantized_matmul_a8_ref(x_q, x_scale, pw, **kw),
        compute,
    )


def test_quantized_result_approximates_float_matmul(rng):
    w = jnp.asarray(rng.normal(size=(K, N)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(M, K)), jnp.float32)
    y = quantized_matmul_pallas(x, quantize_weight(w, 8, 32), **TILES)
    np.testing.assert_allclose(y, x @ w, atol=0.05 * float(jnp.abs(x @ w).max()))


@pytest.mark.parametrize("impl", ["xla", "pallas", "auto"])
def test_dispatch_flattens_leading_dims(impl, rng):
    pw = weights(rng, 4, 64, False, k=64, n=48)
    x = jnp.asarray(rng.normal(size=(2, 3, 64)), jnp.float32)
    want = quantized_matmul_ref(x.reshape(6, 64), pw).reshape(2, 3, 48)
    assert_close(quantized_matmul(x, pw, impl=impl), want)
    x_q, x_scale = quantize_activations(x.reshape(6, 64))
    got = quantized_matmul_a8(x_q.reshape(2, 3, 64), x_scale.reshape(2, 3), pw, impl=impl)
    assert_close(got.reshape(6, 48), quantized_matmul_a8_ref(x_q, x_scale, pw), jnp.bfloat16)


def test_wrong_in_features_is_a_clear_error(rng):
    pw = weights(rng, 4, 64, False)
    with pytest.raises(ValueError, match="features"):
        quantized_matmul_pallas(jnp.zeros((2, K + 1)), pw)
    with pytest.raises(ValueError, match="impl"):
        quantized_matmul(jnp.zeros((2, K)), pw, impl="cuda")


def test_auto_resolves_per_backend(monkeypatch):
    from andesvl_jax.kernels import dispatch

    assert dispatch.resolve_impl("auto") == "xla"  # the tests run on CPU
    monkeypatch.setattr(dispatch.jax, "default_backend", lambda: "tpu")
    # A Pallas kernel that has never run compiled on the backend is not picked (VALIDATED empty)...
    assert dispatch.resolve_impl("auto", "quantized_matmul") == "xla"
    monkeypatch.setitem(dispatch.VALIDATED, "tpu", {"quantized_matmul": frozenset({"pallas"})})
    assert dispatch.resolve_impl("auto", "quantized_matmul") == "pallas"  # ...until it has.
    assert dispatch.resolve_impl("auto", "sparse_matmul") == "xla"
