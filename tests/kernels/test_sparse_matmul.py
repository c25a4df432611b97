"""1:4-sparse 4-bit matmul, Pallas interpret mode vs the jnp reference."""

import jax.numpy as jnp
import numpy as np
import pytest
from andesvl_jax.kernels import quantized_matmul, sparsify_weight
from andesvl_jax.kernels.sparse_matmul import sparse_matmul_pallas, sparse_matmul_ref
from kernel_testing import assert_close


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("group", [64, 128])
def test_matches_reference(group, dtype, rng):
    sw = sparsify_weight(jnp.asarray(rng.normal(size=(200, 70)), jnp.float32), group)
    x = jnp.asarray(rng.normal(size=(5, 200)), dtype)
    out = sparse_matmul_pallas(x, sw, block_n=32, block_k=128)
    assert out.dtype == dtype
    assert_close(out, sparse_matmul_ref(x, sw), dtype)


def test_dispatch_by_weight_type(rng):
    w = rng.normal(size=(128, 16)).astype(np.float32)
    w.reshape(32, 4, 16)[:, 1:] = 0  # already 1:4 sparse, so only the 4-bit rounding remains
    sw = sparsify_weight(jnp.asarray(w), 64)
    x = jnp.asarray(rng.normal(size=(3, 128)), jnp.float32)
    got = quantized_matmul(x, sw, impl="pallas")
    assert_close(got, sparse_matmul_ref(x, sw))
    np.testing.assert_allclose(got, x @ w, atol=0.1 * float(np.abs(x @ w).max()))
