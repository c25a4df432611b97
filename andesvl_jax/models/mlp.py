"""Feed-forward blocks: SwiGLU (Qwen3, AIMv2) and a two-layer GELU MLP (SigLIP2, the projector)."""

from __future__ import annotations

import jax
from flax import nnx

from andesvl_jax.models.layers import Linear, activation


class SwiGLU(nnx.Module):
    """down(act(gate(x)) * up(x)). Logical axes: (embed, mlp)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        embed_axis: str,
        mlp_axis: str,
        act: str = "silu",
        bias: bool = False,
        rngs: nnx.Rngs,
        **dtypes,
    ):
        self.gate = Linear(dim, hidden, axes=(embed_axis, mlp_axis), bias=bias, rngs=rngs, **dtypes)
        self.up = Linear(dim, hidden, axes=(embed_axis, mlp_axis), bias=bias, rngs=rngs, **dtypes)
        self.down = Linear(hidden, dim, axes=(mlp_axis, embed_axis), bias=bias, rngs=rngs, **dtypes)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(activation(self.act)(self.gate(x)) * self.up(x))


class GeluMLP(nnx.Module):
    """fc2(act(fc1(x))), both with bias. Output width may differ from the input (the projector)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        out_dim: int | None = None,
        in_axis: str,
        mlp_axis: str,
        out_axis: str | None = None,
        act: str = "gelu",
        rngs: nnx.Rngs,
        **dtypes,
    ):
        out_dim = dim if out_dim is None else out_dim
        out_axis = in_axis if out_axis is None else out_axis
        self.fc1 = Linear(dim, hidden, axes=(in_axis, mlp_axis), bias=True, rngs=rngs, **dtypes)
        self.fc2 = Linear(
            hidden, out_dim, axes=(mlp_axis, out_axis), bias=True, rngs=rngs, **dtypes
        )
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(activation(self.act)(self.fc1(x)))
