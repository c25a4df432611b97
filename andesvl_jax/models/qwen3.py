"""Qwen3 decoder: GQA with per-head q/k RMSNorm before RoPE, SwiGLU, tied or untied LM head.

Two paths through one set of layers:
  * packed training / teacher forcing: tokens of several samples in one row, separated by segment ids,
    causal within each sample;
  * decoding with a static-shape KV cache (`models/kv_cache.py`: per layer [b * kv, max_len, hd]) and
    per-sequence lengths: a call writes its T new tokens at slots lengths[b] .. lengths[b]+T-1 (T = 1
    for a decode step, more for a prefill chunk) and attends to every filled slot up to its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.config import TextConfig
from andesvl_jax.kernels import dot_product_attention, resolve_attention
from andesvl_jax.models.kv_cache import (
    CompactKVCache,
    CompactLayer,
    KVCache,
    TreeMask,
    cached_attention,
    compact_step,
    write,
)
from andesvl_jax.models.layers import Embed, Linear, RMSNorm
from andesvl_jax.models.mlp import SwiGLU
from andesvl_jax.models.rope import apply_rotary, text_angles
from andesvl_jax.models.stack import make_layers, run_layers
from andesvl_jax.sharding import constrain

ACT = ("batch", "length", "embed")
__all__ = ["KVCache", "Qwen3", "Qwen3Attention", "Qwen3Layer", "TreeMask"]


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

    def __call__(self, x, positions, segment_ids, cache_kv, cache_lengths, impl, tree=None):
        cfg = self.cfg
        b, t, _ = x.shape
        q = self.q_norm(self.q(x).reshape(b, t, cfg.num_heads, cfg.head_dim))
        k = self.k_norm(self.k(x).reshape(b, t, cfg.num_kv_heads, cfg.head_dim))
        v = self.v(x).reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        angles = text_angles(positions, cfg.head_dim, cfg.rope_theta)
        q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        if isinstance(cache_kv, CompactLayer):  # an evicting cache (infer/kv): slots hold positions
            out, new_kv = compact_step(cache_kv, q, k, v, positions, segment_ids != 0, impl)
            return self.o(out.reshape(b, t, -1)), new_kv
        if cache_kv is None:
            out = dot_product_attention(
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
            ck, cv = write(cache_kv[0], k, cache_lengths), write(cache_kv[1], v, cache_lengths)
            slots = cache_lengths[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]
            if tree is not None or resolve_attention(impl, q, ck) == "xla":  # "auto" decoding
                out = cached_attention(q, ck, cv, segment_ids != 0, slots, tree)
            else:  # a registered kernel takes slot-major [b, S, kv, hd] keys and values

                def slot_major(c):
                    return c.reshape(b, -1, *c.shape[1:]).swapaxes(1, 2).astype(q.dtype)

                kv_slots = jnp.broadcast_to(
                    jnp.arange(ck.shape[1], dtype=jnp.int32), (b, ck.shape[1])
                )
                out = dot_product_attention(
                    q,
                    slot_major(ck),
                    slot_major(cv),
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

    def __call__(self, x, positions, segment_ids, cache_kv, cache_lengths, impl, tree=None):
        h, new_kv = self.attn(
            self.input_norm(x), positions, segment_ids, cache_kv, cache_lengths, impl, tree
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
        cache: KVCache | CompactKVCache | None = None,
        tree: TreeMask | None = None,
    ) -> tuple[jax.Array, KVCache | CompactKVCache | None]:
        """embeds [b, t, d]; positions, segment_ids [b, t] (0 = padding) -> (hidden [b, t, d], cache).

        tree (with a full KVCache only): the call's tokens form a draft tree (speculative decoding):
        they are written at slots lengths.. as usual but attend by the `TreeMask`."""
        impl = self.attention_impl
        lengths = None if cache is None else cache.lengths
        if tree is not None and not isinstance(cache, KVCache):
            raise ValueError("a tree attention mask needs a full KVCache (not a compact one)")

        def body(layer, x, kv):
            return layer(x, positions, segment_ids, kv, lengths, impl, tree)

        x = constrain(embeds, ACT)
        if cache is None:
            x, _ = run_layers(self.layers, body, x, None, scan=self.scan, remat=self.remat)
            return self.final_norm(x), None
        if isinstance(cache, CompactKVCache):
            if self.scan:
                raise ValueError(
                    "a compact (evicting) KV cache needs separate layers: run the model in "
                    "infer.engine.decoding_layout (scan_layers=False)"
                )
            x, layers = run_layers(self.layers, body, x, cache.layers, scan=False, remat="none")
            seen = cache.lengths + jnp.sum(segment_ids != 0, axis=1).astype(jnp.int32)
            return self.final_norm(x), CompactKVCache(tuple(layers), seen)
        if cache.stacked != self.scan:
            raise ValueError(
                f"KV cache layers are {'stacked' if cache.stacked else 'separate'} but the model's "
                f"are {'stacked' if self.scan else 'separate'}: build the cache with init_cache"
            )
        # Per-layer buffers in the layers' own layout; a forward with a cache is inference: no remat.
        kv = (cache.k, cache.v) if self.scan else tuple(zip(cache.k, cache.v, strict=True))
        x, kv = run_layers(self.layers, body, x, kv, scan=self.scan, remat="none")
        k, v = kv if self.scan else (tuple(layers) for layers in zip(*kv, strict=True))
        cache = KVCache(k, v, cache.lengths + jnp.sum(segment_ids != 0, axis=1).astype(jnp.int32))
        return self.final_norm(x), cache

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., d] -> float32 logits [..., vocab]."""
        out = self.embed.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
        return out.astype(jnp.float32)
