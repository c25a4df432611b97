"""NaViT vision encoder (AIMv2 or SigLIP2 flavour) over packed native-resolution images, with 2D-RoPE.

All images of a batch row are one sequence (`data.patches.PackedImages`); attention is full within an
image and blocked across images by segment ids. Flow, for N packed patches of width C*P*P:
  patches [b, N, C*P*P] -> patch_embed (+ RMSNorm for AIMv2) -> + resized abs. position table
  -> L x [x += attn(norm1(x)) with 2D-RoPE on q, k;  x += mlp(norm2(x))] -> post_norm -> [b, N, d]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.config import VisionConfig
from andesvl_jax.kernels import dot_product_attention
from andesvl_jax.models.layers import NORMS, Linear, _normal
from andesvl_jax.models.mlp import GeluMLP, SwiGLU
from andesvl_jax.models.posembed import resized_position_embedding
from andesvl_jax.models.rope import apply_rotary, vision_angles
from andesvl_jax.models.stack import make_layers, run_layers
from andesvl_jax.sharding import constrain

ACT = ("batch", "length", "vit_embed")


def _norm(cfg: VisionConfig, dtypes: dict):
    return NORMS[cfg.norm](cfg.hidden_size, eps=cfg.norm_eps, axis_name="vit_embed", **dtypes)


class VisionAttention(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, **dtypes):
        d = cfg.hidden_size
        kw = dict(bias=cfg.bias, rngs=rngs, **dtypes)
        self.q = Linear(d, d, axes=("vit_embed", "vit_heads"), **kw)
        self.k = Linear(d, d, axes=("vit_embed", "vit_heads"), **kw)
        self.v = Linear(d, d, axes=("vit_embed", "vit_heads"), **kw)
        self.o = Linear(d, d, axes=("vit_heads", "vit_embed"), **kw)
        self.num_heads = cfg.num_heads

    def __call__(self, x, segment_ids, angles, impl: str):
        b, n, d = x.shape
        shape = (b, n, self.num_heads, d // self.num_heads)
        q, k, v = (proj(x).reshape(shape) for proj in (self.q, self.k, self.v))
        if angles is not None:
            q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        out = dot_product_attention(
            q, k, v, q_segment_ids=segment_ids, kv_segment_ids=segment_ids, impl=impl
        )
        return self.o(out.reshape(b, n, d))


class VisionBlock(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, **dtypes):
        self.norm1 = _norm(cfg, dtypes)
        self.attn = VisionAttention(cfg, rngs=rngs, **dtypes)
        self.norm2 = _norm(cfg, dtypes)
        mlp_kw = dict(act=cfg.hidden_act, rngs=rngs, **dtypes)
        if cfg.mlp == "swiglu":
            self.mlp = SwiGLU(
                cfg.hidden_size,
                cfg.intermediate_size,
                embed_axis="vit_embed",
                mlp_axis="vit_mlp",
                bias=cfg.bias,
                **mlp_kw,
            )
        else:
            self.mlp = GeluMLP(
                cfg.hidden_size,
                cfg.intermediate_size,
                in_axis="vit_embed",
                mlp_axis="vit_mlp",
                **mlp_kw,
            )

    def __call__(self, x, segment_ids, angles, impl: str):
        x = x + self.attn(self.norm1(x), segment_ids, angles, impl)
        x = x + self.mlp(self.norm2(x))
        return constrain(x, ACT)


class VisionEncoder(nnx.Module):
    """Packed images -> per-patch features [b, N, d] (before pixel shuffle)."""

    def __init__(
        self,
        cfg: VisionConfig,
        *,
        rngs: nnx.Rngs,
        scan: bool = True,
        remat: str = "none",
        attention_impl: str = "xla",
        param_dtype=jnp.float32,
        dtype=jnp.float32,
    ):
        dtypes = dict(param_dtype=param_dtype, dtype=dtype)
        self.cfg = cfg
        # The official AIMv2 patch embed is a conv with bias; SigLIP2's a linear with bias.
        self.patch_embed = Linear(
            cfg.patch_dim,
            cfg.hidden_size,
            axes=("patch", "vit_embed"),
            bias=True,
            rngs=rngs,
            **dtypes,
        )
        self.patch_norm = _norm(cfg, dtypes) if cfg.patch_norm else None
        self.pos_embed = (
            nnx.Param(
                _normal(rngs, (cfg.pos_grid**2, cfg.hidden_size), 0.02, param_dtype),
                logical_axes=("pos_table", "vit_embed"),
            )
            if cfg.use_abs_pos
            else None
        )
        self.layers = make_layers(
            lambda r: VisionBlock(cfg, rngs=r, **dtypes), cfg.num_layers, rngs, scan
        )
        self.post_norm = _norm(cfg, dtypes)
        self.scan, self.remat, self.attention_impl, self.dtype = scan, remat, attention_impl, dtype

    def embed(self, images) -> jax.Array:
        """Patch embedding + absolute positions: the input of the first block. -> [b, N, d]."""
        x = self.patch_embed(images.patches)
        if self.patch_norm is not None:
            x = self.patch_norm(x)
        if self.pos_embed is not None:
            pos = resized_position_embedding(
                self.pos_embed[...],
                images.rows,
                images.cols,
                images.grid_h,
                images.grid_w,
                self.cfg.pos_interpolation,
            )
            x = x + pos.astype(x.dtype)
        return constrain(x, ACT)

    def __call__(self, images) -> jax.Array:
        """images: PackedImages with [b, N] fields -> [b, N, d]."""
        cfg = self.cfg
        x = self.embed(images)
        angles = (
            vision_angles(images.rows, images.cols, cfg.head_dim, cfg.rope_theta)
            if cfg.use_rope2d
            else None
        )
        segment_ids = jnp.asarray(images.segment_ids)
        impl = self.attention_impl

        def body(layer, h, _):
            return layer(h, segment_ids, angles, impl), None

        x, _ = run_layers(self.layers, body, x, None, scan=self.scan, remat=self.remat)
        return self.post_norm(x)
