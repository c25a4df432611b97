"""LoRA (Hu et al. 2021) on any linear chosen by module-path rules, for training (`LoraLinear`, one
adapter) and for 1+N serving (`SlotLoraLinear`, a fixed table of adapter slots chosen per row).

    y = base(x) + (alpha / r) * dropout(x) @ A @ B        A: [in, r], B: [r, out]

Initialisation as in the paper and PEFT (`peft.tuners.lora.LoraLayer.reset_lora_parameters`):
A kaiming-uniform with a = sqrt(5) (bound 1 / sqrt(in)), B zero, so a fresh adapter leaves the
base's output unchanged. Rules are regular expressions matched (`re.search`) against the per-layer
paths of compress/rules.py (`llm/layers/3/attn/q`, `projector/mlp/fc1`, `vision/layers/0/mlp/up`);
first match wins, every rule must match something (same semantics as the quantization rules).

The base is any linear module: a float `models.layers.Linear`, a fake-quantized `QuantLinear`, or
the deployed integer `DeployedLinear` (QALFT: the LoRA trains against the exact on-device base,
whose codes, fp16 steps and static activation steps are `Deployed` variables, never parameters).
The LoRA branch runs in the precision the device runs it at (`LoraRule.branch`): "float" (the
model's compute dtype), "float16" (factors, products and the sum with the base output rounded to
fp16, where the device adds them), or "int8" (A and B fake-quantized per column with their own LSQ
steps, `QuantScale`, then the fp16 path).

Why our own and not Qwix's LoRA (`qwix.LoraProvider`): Qwix intercepts `jnp.dot`/`einsum` calls
of Flax modules by rule and creates the factors inside the intercepted call; it is not installed
here (no network), and it adapts float or Qwix-quantized dots only — it cannot wrap our deployed
integer linears (packed codes, grouped int32 products), which QALFT needs, and it has no slot
table for per-row adapters. A wrapper module around our own linears is ~100 lines and serves all
three bases, PEFT files (compress/lora_files.py) and the engine's slots with one parameterisation.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.compress.deploy import DeployedLinear
from andesvl_jax.compress.lsq import lsq_grad_scale, lsq_quantize
from andesvl_jax.compress.qlinear import QuantScale, replace_module
from andesvl_jax.compress.rules import RuleError, Site, layer_names
from andesvl_jax.kernels import dequantize_weight, lora_delta
from andesvl_jax.models.layers import Linear

BRANCHES = ("float", "float16", "int8")
LORA_LEAVES = ("lora_a", "lora_b", "a_step", "b_step")  # what the lora / qalft stages train
BASES = (Linear, DeployedLinear)  # QuantLinear is a Linear


class LoraParam(nnx.Param):
    """A LoRA factor: the only parameters the lora / qalft stages train."""


class LoraSlots(nnx.Variable):
    """A serving slot table ([slots, in, max_rank] or [slots, max_rank, out]); not trainable."""


class AdapterIds(nnx.Variable):
    """Per-row adapter slot ([batch]; -1 = base only), one Variable shared by every slot linear."""


@dataclasses.dataclass(frozen=True)
class LoraRule:
    """Adapters of rank `rank` and scaling alpha / rank on the linears whose path matches `pattern`.

    dropout: on the LoRA input while training (PEFT's lora_dropout). branch: "float", "float16"
    or "int8" (module docstring). optional: the rule may match nothing.
    """

    pattern: str
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    branch: str = "float"
    optional: bool = False

    def __post_init__(self):
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise RuleError(f"lora rule {self.pattern!r}: not a regular expression ({e})") from e
        if self.rank < 1:
            raise RuleError(f"lora rule {self.pattern!r}: rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise RuleError(f"lora rule {self.pattern!r}: dropout {self.dropout} not in [0, 1)")
        if self.branch not in BRANCHES:
            raise RuleError(
                f"lora rule {self.pattern!r}: branch {self.branch!r} unknown; expected one of "
                f"{BRANCHES}"
            )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


# Target sets by name (the LLM by default; vision and projector optional).
LLM_ALL = r"^llm/layers/\d+/(attn/(q|k|v|o)|mlp/(gate|up|down))$"
TARGETS = {
    "llm": LLM_ALL,
    "llm_attn": r"^llm/layers/\d+/attn/(q|k|v|o)$",
    "llm_qv": r"^llm/layers/\d+/attn/(q|v)$",
    "projector": r"^projector/",
    "vision": r"^vision/layers/\d+/",
}


def lora_rules(
    targets: str | Sequence[str] = "llm", *, rank=8, alpha=16.0, dropout=0.0, branch="float"
) -> tuple[LoraRule, ...]:
    """One rule per target (a TARGETS name or a regular expression), same settings for all."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    return tuple(LoraRule(TARGETS.get(t, t), rank, alpha, dropout, branch) for t in targets)


def base_sites(model: nnx.Module) -> list[Site]:
    sites = []
    for path, module in nnx.iter_modules(model):
        if not isinstance(module, BASES) or "base" in path:
            continue
        weight = module.plane0 if isinstance(module, DeployedLinear) else module.kernel
        stacked = weight.shape[0] if weight.ndim == 3 else None
        sites.append(Site(tuple(path), module, layer_names(path, stacked)))
    return sites


def in_out(module) -> tuple[int, int]:
    if isinstance(module, DeployedLinear):
        return module.meta.in_features, module.meta.out_features
    k, n = module.kernel.shape[-2:]
    return (n, k) if module.out_in else (k, n)


def match_rules(sites: Sequence[Site], rules: Sequence[LoraRule]) -> list[tuple[Site, LoraRule]]:
    """(site, rule) for every site some rule matches (first match wins); a rule matching nothing
    (unless optional) is an error naming it, as are stacked layers matched by different rules."""
    if not rules:
        raise RuleError("no LoRA rules given")
    wins = [0] * len(rules)
    out = []
    for site in sites:
        hits = {
            next((i for i, r in enumerate(rules) if re.search(r.pattern, n)), None)
            for n in site.names
        }
        if len(hits) > 1:
            raise RuleError(
                f"LoRA rules treat the stacked layers of {site.names[0]} differently; "
                "layer-specific rules need separate layers (scan_layers=False)"
            )
        index = hits.pop()
        if index is not None:
            wins[index] += 1
            out.append((site, rules[index]))
    for i, rule in enumerate(rules):
        if not wins[i] and not rule.optional:
            some = ", ".join(s.names[0] for s in list(sites)[:6])
            raise RuleError(
                f"lora rule {i} {rule.pattern!r} matches no linear module (paths look like: "
                f"{some}, ...)"
            )
    return out


def _kaiming_a(key, shape, fan_in: int) -> jax.Array:
    """PEFT's A init: kaiming_uniform_(a=sqrt(5)) on a [r, in] weight: U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


@jax.custom_vjp
def straight_through(y: jax.Array, x: jax.Array, w: jax.Array) -> jax.Array:
    """y (a deployed linear's exact integer output for x) with the input gradient of x @ w, w the
    dequantized weight [K, N]: the straight-through estimator QAT uses (compress/lsq.py), for a
    base whose integer activation codes would otherwise stop every gradient flowing through it
    to the LoRAs of earlier layers. Forward: y unchanged (the device's numbers)."""
    return y


def _straight_through_fwd(y, x, w):
    return y, (x, w)


def _straight_through_bwd(res, ct):
    x, w = res
    rows = ct.reshape(-1, ct.shape[-1]).astype(jnp.float32)
    gx = jnp.matmul(rows, w.T).reshape(x.shape).astype(x.dtype)
    return jnp.zeros_like(ct), gx, jnp.zeros_like(w)


straight_through.defvjp(_straight_through_fwd, _straight_through_bwd)


def base_output(base, x: jax.Array) -> jax.Array:
    """base(x); for a deployed base with the straight-through input gradient."""
    y = base(x)
    if not isinstance(base, DeployedLinear):
        return y
    w = jax.lax.stop_gradient(dequantize_weight(base.weight())).astype(jnp.float32)
    return straight_through(y, x, w)


class StraightThrough(nnx.Module):
    """A deployed linear without an adapter, made transparent to gradients (QALFT: the LoRAs of
    earlier layers learn through it); its forward is unchanged."""

    def __init__(self, base: DeployedLinear):
        self.base = base

    def __call__(self, x: jax.Array) -> jax.Array:
        return base_output(self.base, x)


def _branch_dot(x, w, branch: str):
    if branch == "float":
        return jnp.matmul(x, w.astype(x.dtype))
    h = jnp.matmul(x.astype(jnp.float16), w.astype(jnp.float16), preferred_element_type=jnp.float32)
    return h.astype(jnp.float16)


class LoraLinear(nnx.Module):
    """base(x) + scale * dropout(x) @ A @ B; A [.., in, r], B [.., r, out] (a leading 'layers'
    axis when the base is stacked). `names`: the per-layer paths (PEFT keys, serving targets)."""

    def __init__(self, base, rule: LoraRule, names: Sequence[str], *, key: jax.Array):
        din, dout = in_out(base)
        weight = base.plane0 if isinstance(base, DeployedLinear) else base.kernel
        lead = tuple(weight.shape[:-2])
        self.base = base
        self.lora_a = LoraParam(_kaiming_a(key, (*lead, din, rule.rank), din))
        self.lora_b = LoraParam(jnp.zeros((*lead, rule.rank, dout), jnp.float32))
        int8 = rule.branch == "int8"
        # LSQ steps of the int8 branch, per column: A's from its init, B's a small start (B is 0)
        self.a_step = (
            QuantScale(jnp.max(jnp.abs(self.lora_a[...]), axis=-2) / 127.0) if int8 else None
        )
        self.b_step = QuantScale(jnp.full((*lead, dout), 1e-4, jnp.float32)) if int8 else None
        self.rule, self.names = rule, tuple(names)
        self.training = False  # dropout on (set by the lora / qalft stages)

    @property
    def scale(self) -> float:
        return self.rule.scale

    def factors(self) -> tuple[jax.Array, jax.Array]:
        """(A, B) as the branch uses them (int8: LSQ fake-quantized)."""
        a, b = self.lora_a[...], self.lora_b[...]
        if self.rule.branch == "int8":
            a = lsq_quantize(
                a, self.a_step[...][..., None, :], 127, 127, lsq_grad_scale(a.shape[-2], 127)
            )
            b = lsq_quantize(
                b, self.b_step[...][..., None, :], 127, 127, lsq_grad_scale(b.shape[-2], 127)
            )
        return a, b

    def delta(self, x: jax.Array) -> jax.Array:
        """scale * x @ A @ B in the branch precision: x [..., in] -> [..., out]."""
        if self.training and self.rule.dropout > 0:
            # The train step passes no rng into the model: the mask is keyed by the input's bits
            # (a different mask per batch and per layer, reproducible on resume).
            seed = jax.lax.bitcast_convert_type(jnp.sum(x.astype(jnp.float32)), jnp.uint32)
            keep = jax.random.bernoulli(jax.random.key(seed), 1.0 - self.rule.dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - self.rule.dropout), 0.0).astype(x.dtype)
        a, b = self.factors()
        branch = "float" if self.rule.branch == "float" else "float16"
        h = _branch_dot(_branch_dot(x, a, branch), b, branch)
        return h * jnp.asarray(self.scale, h.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = base_output(self.base, x)
        d = self.delta(x)
        if self.rule.branch == "float":
            return y + d.astype(y.dtype)
        return (y.astype(jnp.float16) + d).astype(y.dtype)  # the device adds in fp16


def apply_lora(
    model: nnx.Module, rules: Sequence[LoraRule] | str, *, seed: int = 0, training: bool = False
) -> nnx.Module:
    """Wrap every linear a rule matches in a LoraLinear (in place; returns `model`). rules: a
    sequence of LoraRule or a TARGETS name (rank 8, alpha 16). The other deployed linears of a
    deployed base are wrapped in `StraightThrough`, so gradients reach every adapter."""
    rules = lora_rules(rules) if isinstance(rules, str) else tuple(rules)
    key = jax.random.key(seed)
    sites = base_sites(model)
    matched = match_rules(sites, rules)
    for i, (site, rule) in enumerate(matched):
        lora = LoraLinear(site.module, rule, site.names, key=jax.random.fold_in(key, i))
        lora.training = training
        replace_module(model, site.path, lora)
    adapted = {site.path for site, _ in matched}
    for site in sites:
        if isinstance(site.module, DeployedLinear) and site.path not in adapted:
            replace_module(model, site.path, StraightThrough(site.module))
    return model


def lora_modules(model: nnx.Module) -> list[tuple[tuple, LoraLinear]]:
    """(path, module) of every LoraLinear."""
    return [(tuple(p), m) for p, m in nnx.iter_modules(model) if isinstance(m, LoraLinear)]


def set_lora_training(model: nnx.Module, training: bool) -> nnx.Module:
    for _, m in lora_modules(model):
        m.training = training
    return model


def merged(model: nnx.Module) -> nnx.Module:
    """A copy of `model` with every LoRA folded into its float base kernel (W + scale * A @ B)."""
    model = nnx.clone(model)
    for path, lora in lora_modules(model):
        base = lora.base
        if type(base) is not Linear:
            raise TypeError(f"{lora.names[0]}: only a float Linear base can be merged")
        a, b = lora.factors()
        ab = (a @ b) * lora.scale
        kernel = base.kernel[...]
        base.kernel.set_value(kernel + (jnp.swapaxes(ab, -1, -2) if base.out_in else ab))
        replace_module(model, path, base)
    return model


class SlotLoraLinear(nnx.Module):
    """base(x) + x @ A[id] @ B[id] per row (BGMV, `kernels.lora_delta`): A [slots, in, R],
    B [slots, R, out] with each adapter's scale folded into B and ranks zero-padded to R, so
    adapters are loaded, replaced and unloaded by writing rows of the tables — same shapes, no
    recompilation. `ids` is shared by all slot linears of a model (the engine sets it per batch)."""

    def __init__(self, base, ids: AdapterIds, slots: int, max_rank: int, name: str, impl="auto"):
        din, dout = in_out(base)
        self.base = base
        self.a = LoraSlots(jnp.zeros((slots, din, max_rank), jnp.float32))
        self.b = LoraSlots(jnp.zeros((slots, max_rank, dout), jnp.float32))
        self.ids, self.name, self.impl = ids, name, impl

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        ids = self.ids[...]
        rows = jnp.broadcast_to(ids.reshape(ids.shape + (1,) * (x.ndim - 2)), x.shape[:-1])
        d = lora_delta(x, self.a[...], self.b[...], rows, impl=self.impl)
        return y + d.astype(y.dtype)


def add_slots(
    model: nnx.Module, slots: int, max_rank: int, targets: str = LLM_ALL, impl: str = "auto"
) -> tuple[AdapterIds, dict[str, SlotLoraLinear]]:
    """Wrap the separate-layer linears matching `targets` in SlotLoraLinears sharing one
    AdapterIds (in place). -> (ids, {per-layer path: module})."""
    if slots < 1 or max_rank < 1:
        raise ValueError(f"adapter slots ({slots}) and max rank ({max_rank}) must be >= 1")
    ids = AdapterIds(jnp.full((1,), -1, jnp.int32))
    table = {}
    for site in base_sites(model):
        (name,) = site.names if len(site.names) == 1 else (None,)
        if name is None:
            raise ValueError("adapter slots need separate layers (infer.engine.decoding_layout)")
        if re.search(targets, name):
            table[name] = SlotLoraLinear(site.module, ids, slots, max_rank, name, impl)
            replace_module(model, site.path, table[name])
    if not table:
        raise ValueError(f"adapter slot targets {targets!r} match no linear of the model")
    return ids, table


__all__ = [
    "LLM_ALL",
    "LORA_LEAVES",
    "TARGETS",
    "AdapterIds",
    "LoraLinear",
    "LoraParam",
    "LoraRule",
    "LoraSlots",
    "SlotLoraLinear",
    "StraightThrough",
    "add_slots",
    "apply_lora",
    "lora_modules",
    "lora_rules",
    "match_rules",
    "merged",
    "set_lora_training",
]
