"""Multi-LoRA (BGMV) matmul, Pallas interpret mode vs the jnp reference."""

import jax.numpy as jnp
import numpy as np
import pytest
from andesvl_jax.kernels import lora_matmul
from andesvl_jax.kernels.lora_matmul import lora_matmul_pallas, lora_matmul_ref
from kernel_testing import assert_close


def inputs(rng, dtype, m=9, k=70, n=50, adapters=3, rank=4):
    arr = lambda *shape: jnp.asarray(rng.normal(size=shape), dtype)  # noqa: E731
    # Ids include -1 (base only) and never the last adapter (skipped by the kernel's cond).
    ids = jnp.asarray(rng.integers(-1, adapters - 1, size=m), jnp.int32).at[0].set(-1).at[1].set(0)
    return arr(m, k), arr(k, n), arr(adapters, k, rank), arr(adapters, rank, n), ids


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matches_reference(dtype, rng):
    args = inputs(rng, dtype)
    out = lora_matmul_pallas(*args, scale=0.5, block_m=16, block_n=16, block_k=32)
    assert out.dtype == dtype
    assert_close(out, lora_matmul_ref(*args, scale=0.5), dtype)


def test_reference_applies_each_rows_adapter(rng):
    x, w, a, b, ids = inputs(rng, jnp.float32)
    out = np.asarray(lora_matmul_ref(x, w, a, b, ids, scale=2.0))
    for row, i in enumerate(np.asarray(ids)):
        want = x[row] @ w + (2.0 * (x[row] @ a[i]) @ b[i] if i >= 0 else 0.0)
        np.testing.assert_allclose(out[row], want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_dispatch_with_leading_dims(impl, rng):
    x, w, a, b, ids = inputs(rng, jnp.float32, m=6)
    got = lora_matmul(x.reshape(2, 3, -1), w, a, b, ids.reshape(2, 3), scale=1.0, impl=impl)
    assert_close(got.reshape(6, -1), lora_matmul_ref(x, w, a, b, ids))


def test_shape_mismatch_is_a_clear_error(rng):
    x, w, a, b, ids = inputs(rng, jnp.float32)
    with pytest.raises(ValueError, match="lora_b"):
        lora_matmul_pallas(x, w, a, b[:, :2], ids)
