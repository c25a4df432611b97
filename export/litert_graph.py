"""The Qwen3 LLM as LiteRT-LM signature functions: `prefill_<T>` and `decode` over an external KV cache.

LiteRT-LM (runtime/executor/llm_litert_compiled_model_executor.cc) feeds each signature by input
name and swaps the KV buffers between calls:
  inputs  tokens [1, T] int32, input_pos [T] int32, kv_cache_k_<i> / kv_cache_v_<i>;
  outputs logits [1, T, vocab] float32 and the updated kv_cache_k_<i> / kv_cache_v_<i>.
A prefill chunk shorter than T is zero-padded with input_pos 0 at the padding. The graph ignores
the padded positions: the chunk's KV are written at slots input_pos[0] .. input_pos[0] + T - 1 (our
`models.kv_cache.write`) and every query sees the slots up to its own (causal by slot, as in our
engine), so padding lands in slots that a later call overwrites before any query sees them. The
cache holds `context + max(T) - 1` slots so that a write never reaches the end of the buffer
(`dynamic_update_slice` would clamp it onto real entries). No attention-mask input: the runtime
then passes none.

The functions run our own `Qwen3` module (models/qwen3.py) on a cache in its own layout, one
[1, kv_heads, slots, head_dim] buffer per layer, so the exported numerics are our model's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.config import TextConfig
from andesvl_jax.models.kv_cache import KVCache
from andesvl_jax.models.qwen3 import Qwen3

DECODE = "decode"


def prefill_name(length: int) -> str:
    return f"prefill_{length}"


def kv_names(num_layers: int) -> list[str]:
    """kv_cache_k_0, kv_cache_v_0, kv_cache_k_1, ... (the runtime's names, in argument order)."""
    return [f"kv_cache_{kind}_{i}" for i in range(num_layers) for kind in ("k", "v")]


@dataclasses.dataclass(frozen=True)
class SignaturePlan:
    """What the exported model holds: prefill lengths (one signature each), the context the
    runtime may fill (metadata max_num_tokens) and the cache slots that implies."""

    prefill_lengths: tuple[int, ...]
    context: int

    def __post_init__(self):
        if not self.prefill_lengths or min(self.prefill_lengths) < 1:
            raise ValueError(f"prefill lengths must be positive, got {self.prefill_lengths}")
        if self.context < max(self.prefill_lengths):
            raise ValueError(
                f"context {self.context} shorter than the longest prefill signature "
                f"{max(self.prefill_lengths)}"
            )

    @property
    def cache_slots(self) -> int:
        return self.context + max(self.prefill_lengths) - 1

    def signatures(self) -> dict[str, int]:
        """signature name -> tokens per call."""
        out = {prefill_name(t): t for t in sorted(set(self.prefill_lengths))}
        out[DECODE] = 1
        return out


def check_expressible(cfg: TextConfig) -> None:
    """Raise if the LLM has a feature the exported graph does not carry (names the field)."""
    if cfg.head_dim % 2:
        raise ValueError(f"text.head_dim={cfg.head_dim}: RoPE needs an even head_dim")
    if cfg.num_heads % cfg.num_kv_heads:
        raise ValueError(
            f"text.num_heads={cfg.num_heads} not a multiple of text.num_kv_heads={cfg.num_kv_heads}"
        )


def cache_shape(cfg: TextConfig, plan: SignaturePlan) -> tuple[int, int, int, int]:
    """One layer's K (or V) buffer: [1, kv_heads, slots, head_dim] (the runtime reads the number
    of slots it may fill from dimension 2)."""
    return (1, cfg.num_kv_heads, plan.cache_slots, cfg.head_dim)


def split_llm(llm: Qwen3):
    """(graphdef, flat weight leaves, treedef): the weights as a list (tf.Variables later)."""
    graphdef, state = nnx.split(llm)
    leaves, treedef = jax.tree.flatten(state)
    return graphdef, [np.asarray(leaf) for leaf in leaves], treedef


def signature_fn(graphdef, treedef, num_layers: int):
    """f(weights, tokens [1, T], input_pos [T], *kv) -> (logits [1, T, V], *kv) for any T."""

    def step(weights, tokens, input_pos, *kv):
        llm = nnx.merge(graphdef, jax.tree.unflatten(treedef, list(weights)))
        t = tokens.shape[1]
        start = input_pos[:1].astype(jnp.int32)
        positions = start[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]
        layers = [c.reshape(c.shape[1:]) for c in kv]  # our layout: [b * kv_heads, slots, hd]
        cache = KVCache(tuple(layers[0::2]), tuple(layers[1::2]), start)
        hidden, cache = llm(
            llm.embed(tokens), positions, jnp.ones_like(tokens, dtype=jnp.int32), cache
        )
        out = []
        for i in range(num_layers):
            out += [cache.k[i][None], cache.v[i][None]]
        return (llm.logits(hidden), *out)

    return step


def reference_logits(llm: Qwen3, prompt_ids: list[int]) -> np.ndarray:
    """[len(prompt_ids), vocab] float32: our model's teacher-forced logits (no cache)."""
    ids = jnp.asarray([prompt_ids], jnp.int32)
    positions = jnp.arange(len(prompt_ids), dtype=jnp.int32)[None]
    hidden, _ = llm(llm.embed(ids), positions, jnp.ones_like(ids))
    return np.asarray(llm.logits(hidden)[0], np.float32)
