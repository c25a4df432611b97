"""QAT linears: `QuantLinear` (an LSQ fake-quantized `models.layers.Linear`) and `quantize_model`,
which swaps a model's matching linears for them in place.

Design: module surgery, not a flag on `Linear`. `models/` sits below `compress/` in the layering
(docs/architecture.md), so `Linear` cannot know about quantization; `QuantLinear` subclasses it and
keeps the very same `kernel` Param (and bias), adding the step sizes as `QuantScale` params — a
distinct `nnx.Param` subtype, so an optimizer can give them their own learning rate
(`nnx.state(model, QuantScale)`), and they shard by logical axes like the kernel. The rest of the
model is untouched: stacked layers (`scan`), remat, jit and sharding work as for the float model,
because the quantizer is plain jnp inside `__call__`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.compress.lsq import (
    absmax_weight_init,
    act_codes,
    dequantize_codes,
    mse_weight_init,
    weight_codes,
)
from andesvl_jax.compress.qmatmul import dense_product, grouped_product
from andesvl_jax.compress.recorder import record
from andesvl_jax.compress.rules import QuantRule, RuleError, Site, linear_sites, resolve_rules
from andesvl_jax.models.layers import Embed, Linear

WEIGHT_INITS = {"absmax": absmax_weight_init, "mse": mse_weight_init}


class QuantScale(nnx.Param):
    """A learned quantization parameter (step size, zero point, activation offset)."""


class QuantLinear(Linear):
    """y = fake_quant(x) @ fake_quant(kernel) (+ bias) by LSQ, with the same kernel as the Linear.

    w_scale [.., G, N] (G = K / group, 1 per channel), w_zero like it or None; a_scale, a_offset
    [..] (per-tensor; a leading 'layers' axis when stacked) or None. `names`: the per-layer paths
    (rules, calibration, deployment). `exact`: the grouped product that matches the deployed integer
    arithmetic (default) or one dense matmul (`dense_product`; less memory at large K/group).
    """

    def __init__(self, linear: Linear, rule: QuantRule, names: tuple[str, ...], *, exact=True):
        if linear.out_in:
            raise RuleError(f"{names[0]}: quantize before decoding_layout (kernel is [out, in])")
        kernel = linear.kernel
        k, n = kernel.shape[-2:]
        lead = kernel.shape[:-2]
        axes = kernel.get_metadata().get("logical_axes")
        lead_axes = None if axes is None else tuple(axes[:-2])
        g = 1 if rule.group_size is None else k // rule.group_size

        def meta(a):
            return {} if a is None else {"logical_axes": a}

        self.kernel, self.bias, self.dtype, self.out_in = kernel, linear.bias, linear.dtype, False
        self.w_scale = QuantScale(jnp.ones((*lead, g, n), jnp.float32), **meta(axes))
        self.w_zero = (
            QuantScale(jnp.zeros((*lead, g, n), jnp.float32), **meta(axes))
            if rule.zero_point
            else None
        )
        static = rule.act != "none" and rule.act_scale == "static"
        self.a_scale = (
            QuantScale(jnp.ones(lead, jnp.float32), **meta(lead_axes)) if static else None
        )
        self.a_offset = (
            QuantScale(jnp.zeros(lead, jnp.float32), **meta(lead_axes)) if rule.act_offset else None
        )
        self.rule, self.names, self.exact = rule, tuple(names), exact
        self.observing = False  # calibration: float activations, inputs recorded
        self.enabled = (
            True  # False: the float Linear (e.g. a distillation teacher on the same params)
        )

    def quantized_weight(self) -> tuple[jax.Array, jax.Array]:
        """(signed codes [G, group, N], fp16-exact steps [G, N]) of the current kernel."""
        kernel = self.kernel[...]
        if self.out_in:
            kernel = kernel.T
        zero = None if self.w_zero is None else self.w_zero[...]
        return weight_codes(
            kernel, self.w_scale[...], zero, self.rule.weight_bits, self.rule.group_size
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.enabled:
            return Linear.__call__(self, x)
        wc, sw = self.quantized_weight()
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        if self.observing:
            record(self.names, x2)
        if self.rule.act == "none" or self.observing:
            w = dequantize_codes(wc, sw).astype(self.dtype)
            y = jnp.matmul(x2.astype(self.dtype), w, preferred_element_type=jnp.float32)
        else:
            scale = None if self.a_scale is None else self.a_scale[...]
            offset = None if self.a_offset is None else self.a_offset[...]
            xc, sx = act_codes(x2, scale, offset, self.rule.act_bits)
            if self.exact:
                y = grouped_product(xc, wc, sw, sx, "float")
            else:
                y = dense_product(xc, wc, sw, sx, self.dtype)
        y = y.astype(self.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y.reshape(*lead, -1)


# Quantized token embeddings: the table fake-quantized as the output projection it also is.
#
# A Qwen3 embedding table [vocab, D] is read two ways: rows by token id (the input embedding) and,
# when tied, as the LM head (logits = h @ tableᵀ: a [K = D, N = vocab] kernel). `QuantEmbed` quantizes
# it once, as that kernel stored [out, in] (`Linear.out_in`): one step per group of D entries of each
# token's row (or per row), weights only (an embedding has no activation input to quantize). Both
# reads see the same codes: the lookup takes rows of the dequantized table, `attend` is the
# QuantLinear product. `deploy` turns it into a `DeployedEmbed` (packed codes of the [D, vocab]
# kernel, fp16 steps): the head through the quantized matmul, the lookup by unpacking columns.
# On Qwen3-0.6B the tied table is 155 M of the LLM's 596 M parameters: an on-device size that counts
# it in float misses a quarter of the model.
class QuantEmbed(QuantLinear):
    """An `Embed` with LSQ fake-quantized weights (the same `embedding` Param, as `kernel`)."""

    def __init__(self, embed: Embed, rule: QuantRule, names: tuple[str, ...], *, exact=True):
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


def replace_module(model: nnx.Module, path: tuple, new: nnx.Module) -> None:
    parent = model
    for p in path[:-1]:
        parent = parent[p] if isinstance(p, int) else getattr(parent, p)
    if isinstance(path[-1], int):
        parent[path[-1]] = new
    else:
        setattr(parent, path[-1], new)


def quant_sites(model: nnx.Module) -> list[Site]:
    """The model's QuantLinears (after `quantize_model`)."""
    return list(linear_sites(model, QuantLinear))


def init_weight_scales(qlin: QuantLinear, method: str = "absmax") -> None:
    """Set the step sizes (and zero points) of `qlin` from its kernel: absmax or MSE search."""
    if method not in WEIGHT_INITS:
        raise ValueError(f"unknown weight init {method!r}; expected one of {sorted(WEIGHT_INITS)}")
    rule = qlin.rule
    kernel = qlin.kernel[...]
    if qlin.out_in:  # stored [out, in] (an embedding table): the steps are of the [in, out] kernel
        kernel = jnp.swapaxes(kernel, -1, -2)
    s, z = WEIGHT_INITS[method](kernel, rule.weight_bits, rule.group_size, rule.zero_point)
    qlin.w_scale.set_value(s.astype(jnp.float32))
    if z is not None:
        qlin.w_zero.set_value(z.astype(jnp.float32))


def quantize_model(
    model: nnx.Module,
    rules,
    *,
    weight_init: str = "absmax",
    exact: bool = True,
) -> nnx.Module:
    """Replace every linear a rule wins by a QuantLinear (in place; returns `model`).

    rules: a sequence of QuantRule or a recipe name (rules.RECIPES). Weight step sizes start from
    `weight_init` ("absmax" or "mse"); static activation steps start at 1 — set them with
    `calibrate.calibrate_activations` before training or deploying.
    """
    from andesvl_jax.compress.rules import get_recipe, weight_sites

    quantized = {Linear: QuantLinear, Embed: QuantEmbed}  # module type -> its quantized form
    rules = get_recipe(rules) if isinstance(rules, str) else tuple(rules)
    sites = [s for s in weight_sites(model) if not isinstance(s.module, QuantLinear)]
    for site, rule in resolve_rules(sites, rules):
        make = next(q for t, q in quantized.items() if isinstance(site.module, t))
        qlin = make(site.module, rule, site.names, exact=exact)
        init_weight_scales(qlin, weight_init)
        replace_module(model, site.path, qlin)
    return model


def set_quantization(model: nnx.Module, enabled: bool) -> nnx.Module:
    """Switch every QuantLinear between fake-quantized and float (in place; returns `model`)."""
    for site in quant_sites(model):
        site.module.enabled = enabled
    return model


QUANT_LEAVES = ("w_scale", "w_zero", "a_scale", "a_offset")  # QuantLinear's QuantScale attributes


def needs_calibration(model: nnx.Module) -> bool:
    """Whether some QuantLinear has a static activation step (to calibrate before use)."""
    return any(s.module.a_scale is not None for s in quant_sites(model))
