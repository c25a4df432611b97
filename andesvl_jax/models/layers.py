"""Basic NNX layers with logical axis names: Linear, RMSNorm, LayerNorm, Embed, activations.

Every parameter carries `logical_axes` metadata (e.g. ('embed', 'mlp')); train/sharding.py maps
those names to mesh axes. Parameters are stored in `param_dtype`; compute happens in `dtype`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

Axes = tuple[str | None, ...]


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float, dtype) -> jax.Array:
    return (jax.random.normal(rngs.params(), shape, jnp.float32) * std).astype(dtype)


class Linear(nnx.Module):
    """y = x @ kernel (+ bias). kernel: [in, out] with logical axes `axes`."""

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

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.matmul(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


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
        """x: [..., embed] -> logits [..., vocab]."""
        return jnp.matmul(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
