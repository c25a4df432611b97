"""The quantized matmul both the QAT forward and the deployed integer forward run.

    y[m, n] = s_x · Σ_g s_w[g, n] · acc[m, g, n],   acc[m, g, n] = Σ_{k ∈ group g} x_c[m, k] · w_c[k, n]

x_c, w_c are integer codes. The deployed model accumulates them in int32 (`accumulate="int"`);
QAT holds them as floats with straight-through gradients (`accumulate="float"`), where the group
sums are exact integers as long as they stay below 2^24 (always for A8 codes and groups ≤ 128;
for A16 codes rarely exceeded). The rescale after the accumulation is the same jnp code in both:
one rescale per group of K (per channel: one per matmul, the NPU's single requantisation), then
the activation step. Given the same inputs, a QAT linear and its deployed linear therefore return
the same bits; whole models agree bit for bit when run op by op (tests/compress/test_deploy.py).
In two *compiled* programs XLA fuses the float ops between the linears (norm and softmax sums)
differently, which changes their last bit and can flip an activation code at a rounding tie —
measured on the tiny model: identical tokens, logits within ~1e-4 relative (A16), 0 (A8, mostly).
`dense_product` is the cheaper, not bit-exact form for large-scale training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def accumulate_groups(xc: jax.Array, wc: jax.Array, accumulate: str) -> jax.Array:
    """x codes [M, K], w codes [G, group, N] -> per-group sums [M, G, N] (int32 or float32)."""
    g, group, n = wc.shape
    xg = xc.reshape(xc.shape[0], g, group)
    if accumulate == "int":
        xg, wc, out = xg.astype(jnp.int32), wc.astype(jnp.int32), jnp.int32
    elif accumulate == "float":
        out = jnp.float32
    else:
        raise ValueError(f"accumulate must be 'int' or 'float', got {accumulate!r}")
    if g == 1:
        return jnp.matmul(xg[:, 0], wc[0], preferred_element_type=out)[:, None, :]
    return jnp.einsum("mgk,gkn->mgn", xg, wc, preferred_element_type=out)


def rescale(acc: jax.Array, s_w: jax.Array, s_x: jax.Array) -> jax.Array:
    """acc [M, G, N] · s_w [G, N] summed over G, times s_x ([] or per token [M]) -> float32 [M, N]."""
    acc, s_w, s_x = acc.astype(jnp.float32), s_w.astype(jnp.float32), jnp.asarray(s_x, jnp.float32)
    if acc.shape[1] == 1:
        y = acc[:, 0] * s_w[0]
    else:
        y = jnp.einsum("mgn,gn->mn", acc, s_w, precision=jax.lax.Precision.HIGHEST)
    return y * (s_x[:, None] if s_x.ndim else s_x)


def grouped_product(xc, wc, s_w, s_x, accumulate: str) -> jax.Array:
    """The quantized matmul: x codes [M, K], w codes [G, group, N], s_w [G, N], s_x -> [M, N] f32."""
    return rescale(accumulate_groups(xc, wc, accumulate), s_w, s_x)


def dense_product(xc, wc, s_w, s_x, dtype) -> jax.Array:
    """(x_c · s_x) @ (w_c · s_w) as one matmul in `dtype` with float32 accumulation: the same
    value up to float rounding, without the [M, G, N] partial sums (memory-light QAT)."""
    s_x = jnp.asarray(s_x, jnp.float32)
    x = xc * (s_x[:, None] if s_x.ndim else s_x)
    w = (wc * s_w[:, None, :]).reshape(-1, wc.shape[-1])
    return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)
