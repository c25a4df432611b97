"""Basic NNX layers with logical axis names: Linear, RMSNorm, LayerNorm, Embed, activations.

Every parameter carries `logical_axes` metadata (e.g. ('embed', 'mlp')); andesvl_jax/sharding.py maps
those names to mesh axes. Parameters are stored in `param_dtype`; compute happens in `dtype`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

Axes = tuple[str | None, ...]
FEW_ROWS = 64  # rows_matmul: up to this many rows the product is laid out [out, rows]


def rows_matmul(w: jax.Array, x: jax.Array) -> jax.Array:
    """w [out, in] @ x [..., in] -> [..., out], computed as [out, rows] for up to FEW_ROWS rows.

    On CPU a product with few rows is bound by reading w; XLA's kernels read a row-major [out, in]
    matrix fastest when the product is laid out [out, rows] (8 rows: ~2.5-3x faster than [rows,
    out], which XLA picks by folding the final transpose into the product unless a barrier stops
    it). Many rows: a plain product.
    """
    if math.prod(x.shape[:-1]) > FEW_ROWS:
        return jnp.einsum("oi,...i->...o", w, x)
    rows = x.reshape(-1, x.shape[-1])
    y = jax.lax.optimization_barrier(jnp.einsum("oi,ni->on", w, rows))
    return y.T.reshape(*x.shape[:-1], w.shape[0])


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float, dtype) -> jax.Array:
    return (jax.random.normal(rngs.params(), shape, jnp.float32) * std).astype(dtype)


class Linear(nnx.Module):
    """y = x @ kernel (+ bias). kernel: [in, out] with logical axes `axes`.

    `out_in` (False unless set by `infer.engine.decoding_layout`): the kernel is stored transposed,
    [out, in], and y = `rows_matmul(kernel, x)`. For a few rows (decoding) on CPU that reads the
    weights as contiguous dot products: ~1.3x faster at 1 row and ~2-3x at 8 (docs/benchmarks.md).
    """

    def __init__(
        self,
        din: int,
        dout: int,
        *,
        axes: Axes,
        bias: bool = False,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=jnp.float32,
    ):
        self.kernel = nnx.Param(
            _normal(rngs, (din, dout), din**-0.5, param_dtype), logical_axes=axes
        )
        self.bias = (
            nnx.Param(jnp.zeros((dout,), param_dtype), logical_axes=(axes[1],)) if bias else None
        )
        self.dtype = dtype
        self.out_in = False

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...].astype(self.dtype)
        if self.out_in:
            y = rows_matmul(kernel, x.astype(self.dtype))
        else:
            y = jnp.matmul(x.astype(self.dtype), kernel)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


def rows_layout(module: nnx.Module) -> nnx.Module:
    """Store every `Linear` kernel under `module` [out, in] (`Linear.out_in`), in place: the
    layout few-row (decoding) products read fastest on CPU. Returns `module`."""
    for _, sub in nnx.iter_modules(module):
        if isinstance(sub, Linear) and not sub.out_in:
            kernel = sub.kernel
            axes = kernel.get_metadata().get("logical_axes")
            meta = {} if axes is None else {"logical_axes": tuple(reversed(axes))}
            sub.kernel = nnx.Param(jnp.asarray(kernel[...]).T.copy(), **meta)
            sub.out_in = True
    return module


class RMSNorm(nnx.Module):
    """x * rsqrt(mean(x^2) + eps) * scale, computed in float32."""

    def __init__(
        self,
        dim: int,
        *,
        eps: float,
        axis_name: str | None,
        param_dtype=jnp.float32,
        dtype=jnp.float32,
    ):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=(axis_name,))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


class LayerNorm(nnx.Module):
    """(x - mean) / sqrt(var + eps) * scale + bias, computed in float32."""

    def __init__(
        self,
        dim: int,
        *,
        eps: float,
        axis_name: str | None,
        param_dtype=jnp.float32,
        dtype=jnp.float32,
    ):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=(axis_name,))
        self.bias = nnx.Param(jnp.zeros((dim,), param_dtype), logical_axes=(axis_name,))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (
            y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        ).astype(self.dtype)


NORMS = {"rms": RMSNorm, "layer": LayerNorm}


class Embed(nnx.Module):
    """Token embedding table [vocab, embed]; `attend` is the tied output projection."""

    def __init__(
        self, vocab: int, dim: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32
    ):
        self.embedding = nnx.Param(
            _normal(rngs, (vocab, dim), 0.02, param_dtype), logical_axes=("vocab", "embed")
        )
        self.dtype = dtype

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        """x: [..., embed] -> logits [..., vocab].

        For a few rows (decoding) the product is `rows_matmul(embedding, x)`: XLA then reads the
        [vocab, embed] table as contiguous dot products instead of transposing it in a loop (CPU:
        ~1.3x faster at 1 row, ~2-3x at 8). Many rows (training) keep x @ embedding.T.
        """
        table = self.embedding[...].astype(self.dtype)
        if math.prod(x.shape[:-1]) <= FEW_ROWS:
            return rows_matmul(table, x.astype(self.dtype))
        return jnp.matmul(x.astype(self.dtype), table.T)


ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
