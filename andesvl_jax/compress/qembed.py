"""Quantized token embeddings: the table fake-quantized as the output projection it also is.

A Qwen3 embedding table [vocab, D] is read two ways: rows by token id (the input embedding) and,
when tied, as the LM head (logits = h @ tableᵀ: a [K = D, N = vocab] kernel). `QuantEmbed` quantizes
it once, as that kernel stored [out, in] (`Linear.out_in`): one step per group of D entries of each
token's row (or per row), weights only (an embedding has no activation input to quantize). Both
reads see the same codes: the lookup takes rows of the dequantized table, `attend` is the
QuantLinear product. `deploy` turns it into a `DeployedEmbed` (packed codes of the [D, vocab]
kernel, fp16 steps): the head through the quantized matmul, the lookup by unpacking columns.
On Qwen3-0.6B the tied table is 155 M of the LLM's 596 M parameters: an on-device size that counts
it in float misses a quarter of the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from andesvl_jax.compress.lsq import dequantize_codes
from andesvl_jax.compress.qlinear import QuantLinear, QuantScale
from andesvl_jax.compress.rules import QuantRule, RuleError
from andesvl_jax.models.layers import Embed


class QuantEmbed(QuantLinear):
    """An `Embed` with LSQ fake-quantized weights (the same `embedding` Param, as `kernel`)."""

    def __init__(self, embed: Embed, rule: QuantRule, names: tuple[str, ...], *, exact=True):
        if rule.act != "none":
            raise RuleError(
                f"{names[0]}: an embedding table quantizes weights only; rule {rule.pattern!r} "
                f"asks act={rule.act!r} (use act='none')"
            )
        table = embed.embedding
        vocab, d = table.shape
        axes = table.get_metadata().get("logical_axes")  # ("vocab", "embed")
        meta = {} if axes is None else {"logical_axes": tuple(reversed(axes))}
        g = 1 if rule.group_size is None else d // rule.group_size
        self.kernel, self.bias, self.dtype, self.out_in = table, None, embed.dtype, True
        self.w_scale = QuantScale(jnp.ones((g, vocab), jnp.float32), **meta)
        self.w_zero = (
            QuantScale(jnp.zeros((g, vocab), jnp.float32), **meta) if rule.zero_point else None
        )
        self.a_scale = self.a_offset = None
        self.rule, self.names, self.exact = rule, tuple(names), exact
        self.observing = False
        self.enabled = True

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Token ids -> rows of the (fake-quantized) table, in the compute dtype."""
        if not self.enabled:
            return jnp.take(self.kernel[...], ids, axis=0).astype(self.dtype)
        wc, sw = self.quantized_weight()  # [G, group, vocab], [G, vocab]
        table_t = dequantize_codes(wc, sw)  # [D, vocab]
        return (
            jnp.take(table_t, ids, axis=1).astype(self.dtype).transpose(*range(1, ids.ndim + 1), 0)
        )

    def attend(self, x: jax.Array) -> jax.Array:
        """The tied head: x [..., D] -> logits [..., vocab] with the same codes."""
        return QuantLinear.__call__(self, x)
