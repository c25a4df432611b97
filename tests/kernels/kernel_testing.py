"""Tolerances for the kernel tests, derived from the dtype (imported by the test files)."""

import jax.numpy as jnp
import numpy as np

# Relative to the largest reference magnitude: float32 differs only by summation order; bfloat16
# also by where intermediate values are rounded (8 mantissa bits -> ~4e-3 per rounding).
RTOL = {jnp.dtype(jnp.float32): 2e-5, jnp.dtype(jnp.bfloat16): 3e-2}


def assert_close(actual, expected, dtype=None):
    """Max-abs error <= RTOL[dtype] * max(|expected|, 1): one scale per tensor, not per element."""
    dtype = jnp.dtype(dtype or expected.dtype)
    a = np.asarray(jnp.asarray(actual, jnp.float32))
    e = np.asarray(jnp.asarray(expected, jnp.float32))
    assert a.shape == e.shape, (a.shape, e.shape)
    assert np.all(np.isfinite(a)), "non-finite values in kernel output"
    bound = RTOL[dtype] * max(float(np.abs(e).max()), 1.0)
    err = float(np.abs(a - e).max())
    assert err <= bound, f"max abs error {err:.3g} > {bound:.3g} ({dtype})"
