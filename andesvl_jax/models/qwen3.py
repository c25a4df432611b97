"""Qwen3 decoder: GQA with per-head q/k RMSNorm before RoPE, SwiGLU, tied or untied LM head.

Two paths through one set of layers:
  * packed training / teacher forcing: tokens of several samples in one row, separated by segment ids,
    causal within each sample;
  * decoding with a static-shape KV cache ([layers, b, S, kv, hd]) and per-sequence lengths: a call
    writes its T new tokens at slots lengths[b] .. lengths[b]+T-1 (T = 1 for a decode step, more for a
    prefill chunk) and attends to every filled slot up to its own.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.config import TextConfig
from andesvl_jax.models.attention import attention
from andesvl_jax.models.layers import Embed, Linear, RMSNorm
from andesvl_jax.models.mlp import SwiGLU
from andesvl_jax.models.rope import apply_rotary, text_angles
from andesvl_jax.models.stack import make_layers, run_layers
from andesvl_jax.train.sharding import constrain

ACT = ("batch", "length", "embed")


class KVCache(NamedTuple):
    """k, v: [layers, b, max_len, kv_heads, head_dim]; lengths: [b] filled slots per sequence."""

    k: jax.Array
    v: jax.Array
    lengths: jax.Array

    @classmethod
    def init(cls, cfg: TextConfig, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
        shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((batch,), jnp.int32))


def _write(cache: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """cache [b, S, kv, hd] <- new [b, T, kv, hd] at per-row slot `start` [b]."""
    return jax.vmap(lambda c, n, s: jax.lax.dynamic_update_slice(c, n.astype(c.dtype), (s, 0, 0)))(
        cache, new, start
    )


class Qwen3Attention(nnx.Module):
    def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, **dtypes):
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q = Linear(d, cfg.num_heads * hd, axes=("embed", "heads"), rngs=rngs, **dtypes)
        self.k = Linear(d, cfg.num_kv_heads * hd, axes=("embed", "kv_heads"), rngs=rngs, **dtypes)
        self.v = Linear(d, cfg.num_kv_heads * hd, axes=("embed", "kv_heads"), rngs=rngs, **dtypes)
        self.o = Linear(cfg.num_heads * hd, d, axes=("heads", "embed"), rngs=rngs, **dtypes)
        self.q_norm = RMSNorm(hd, eps=cfg.norm_eps, axis_name="head_dim", **dtypes)
        self.k_norm = RMSNorm(hd, eps=cfg.norm_eps, axis_name="head_dim", **dtypes)
        self.cfg = cfg

    def __call__(self, x, positions, segment_ids, cache_kv, cache_lengths, impl):
        cfg = self.cfg
        b, t, _ = x.shape
        q = self.q_norm(self.q(x).reshape(b, t, cfg.num_heads, cfg.head_dim))
        k = self.k_norm(self.k(x).reshape(b, t, cfg.num_kv_heads, cfg.head_dim))
        v = self.v(x).reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        angles = text_angles(positions, cfg.head_dim, cfg.rope_theta)
        q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        if cache_kv is None:
            out = attention(
                q,
                k,
                v,
                q_segment_ids=segment_ids,
                kv_segment_ids=segment_ids,
                q_positions=positions,
                kv_positions=positions,
                causal=True,
                impl=impl,
            )
            new_kv = None
        else:
            ck, cv = _write(cache_kv[0], k, cache_lengths), _write(cache_kv[1], v, cache_lengths)
            slots = cache_lengths[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]
            kv_slots = jnp.broadcast_to(jnp.arange(ck.shape[1], dtype=jnp.int32), (b, ck.shape[1]))
            out = attention(
                q,
                ck.astype(q.dtype),
                cv.astype(q.dtype),
                q_segment_ids=(segment_ids != 0).astype(jnp.int32),
                kv_segment_ids=jnp.ones_like(kv_slots),
                q_positions=slots,
                kv_positions=kv_slots,
                causal=True,
                impl=impl,
            )
            new_kv = (ck, cv)
        return self.o(out.reshape(b, t, -1)), new_kv


class Qwen3Layer(nnx.Module):
    def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, **dtypes):
        self.input_norm = RMSNorm(cfg.hidden_size, eps=cfg.norm_eps, axis_name="embed", **dtypes)
        self.attn = Qwen3Attention(cfg, rngs=rngs, **dtypes)
        self.post_norm = RMSNorm(cfg.hidden_size, eps=cfg.norm_eps, axis_name="embed", **dtypes)
        self.mlp = SwiGLU(
            cfg.hidden_size,
            cfg.intermediate_size,
            embed_axis="embed",
            mlp_axis="mlp",
            rngs=rngs,
            **dtypes,
        )

    def __call__(self, x, positions, segment_ids, cache_kv, cache_lengths, impl):
        h, new_kv = self.attn(
            self.input_norm(x), positions, segment_ids, cache_kv, cache_lengths, impl
        )
        x = x + h
        x = x + self.mlp(self.post_norm(x))
        return constrain(x, ACT), new_kv


class Qwen3(nnx.Module):
    """Embeddings [b, t, d] -> final hidden states; `logits` projects them to the vocabulary."""

    def __init__(
        self,
        cfg: TextConfig,
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
        self.embed = Embed(cfg.vocab_size, cfg.hidden_size, rngs=rngs, **dtypes)
        self.layers = make_layers(
            lambda r: Qwen3Layer(cfg, rngs=r, **dtypes), cfg.num_layers, rngs, scan
        )
        self.final_norm = RMSNorm(cfg.hidden_size, eps=cfg.norm_eps, axis_name="embed", **dtypes)
        self.lm_head = (
            None
            if cfg.tie_embeddings
            else Linear(
                cfg.hidden_size, cfg.vocab_size, axes=("embed", "vocab"), rngs=rngs, **dtypes
            )
        )
        self.scan, self.remat, self.attention_impl = scan, remat, attention_impl

    def __call__(
        self,
        embeds: jax.Array,
        positions: jax.Array,
        segment_ids: jax.Array,
        cache: KVCache | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """embeds [b, t, d]; positions, segment_ids [b, t] (0 = padding) -> (hidden [b, t, d], cache)."""
        impl = self.attention_impl
        lengths = None if cache is None else cache.lengths

        def body(layer, x, kv):
            return layer(x, positions, segment_ids, kv, lengths, impl)

        per_layer = None if cache is None else (cache.k, cache.v)
        x, new_kv = run_layers(
            self.layers, body, constrain(embeds, ACT), per_layer, scan=self.scan, remat=self.remat
        )
        if cache is not None:
            cache = KVCache(
                new_kv[0],
                new_kv[1],
                cache.lengths + jnp.sum(segment_ids != 0, axis=1).astype(jnp.int32),
            )
        return self.final_norm(x), cache

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., d] -> float32 logits [..., vocab]."""
        out = self.embed.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
        return out.astype(jnp.float32)
