"""Quantization rules: which linear gets which weight/activation quantization (first match wins).

A rule is a frozen dataclass matched by regular expression (`re.search`) against a linear's
**per-layer path**, e.g. `llm/layers/3/attn/q`, `llm/lm_head`, `projector/mlp/fc1`,
`vision/layers/0/mlp/up`. Layers stacked for `scan` are matched layer by layer, so one pattern set
serves both layouts. A list of rules is a mixed-precision recipe: each linear takes the first rule
that matches it; a rule with `weight_bits=None` keeps what it matches in float. Every rule must
win at least one linear (unless `optional`), so a misspelt pattern or a shadowed rule is an error
that names it rather than a silently unquantized model. Qwix-style (`qwix.QtRule`), our own code:
qwix is not installed here and has no learned step sizes (compress/lsq.py docstring).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence

from flax import nnx

from andesvl_jax.kernels.quant_format import GROUP_SIZES
from andesvl_jax.models.layers import Embed, Linear

WEIGHT_BITS = (2, 3, 4, 8)
ACT_MODES = {"none": None, "a16": 16, "a8": 8}
ACT_SCALES = ("static", "dynamic")


class RuleError(ValueError):
    """A rule (or a rule list) cannot be applied; the message names the rule and the module."""


RULE_KINDS = ("linear", "embedding")


@dataclasses.dataclass(frozen=True)
class QuantRule:
    """How the linears whose path matches `pattern` are quantized.

    weight_bits: 2, 3, 4 or 8; None keeps the matched linears in float (a "skip" rule).
    group_size: 32, 64 or 128 consecutive input (K) rows share a step size; None = per output
      channel (one step size per column over all of K).
    zero_point: weights get a per-group integer zero point (asymmetric) instead of being symmetric.
    act: "none" (float activations), "a16" or "a8" (int16 / int8 input codes).
    act_scale: "static" (one learned/calibrated per-tensor step, what NPUs run) or "dynamic"
      (absmax per token, computed at run time).
    act_offset: LSQ+ learned offset for asymmetric activations (static only): unsigned codes with
      an integer zero point.
    optional: the rule may match nothing (e.g. an `lm_head` rule for tied-embedding models).
    kind: what the rule matches: "linear" modules (default) or token "embedding" tables
      (weights only: compress/qlinear.QuantEmbed). A broad pattern like `^llm/` never catches
      the embedding table unless a rule of kind "embedding" names it.
    """

    pattern: str
    weight_bits: int | None = 4
    group_size: int | None = 32
    zero_point: bool = False
    act: str = "none"
    act_scale: str = "static"
    act_offset: bool = False
    optional: bool = False
    kind: str = "linear"

    def __post_init__(self):
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise RuleError(f"rule {self.pattern!r}: not a regular expression ({e})") from e
        if self.weight_bits is not None and self.weight_bits not in WEIGHT_BITS:
            raise RuleError(
                f"rule {self.pattern!r}: weight_bits {self.weight_bits!r} unsupported; expected "
                f"one of {WEIGHT_BITS} or None (keep float)"
            )
        if self.group_size is not None and self.group_size not in GROUP_SIZES:
            raise RuleError(
                f"rule {self.pattern!r}: group_size {self.group_size!r} unsupported; expected one "
                f"of {GROUP_SIZES} or None (per channel)"
            )
        if self.act not in ACT_MODES:
            raise RuleError(
                f"rule {self.pattern!r}: act {self.act!r} unknown; expected one of {list(ACT_MODES)}"
            )
        if self.act_scale not in ACT_SCALES:
            raise RuleError(
                f"rule {self.pattern!r}: act_scale {self.act_scale!r} unknown; expected one of "
                f"{ACT_SCALES}"
            )
        if self.act_offset and (self.act == "none" or self.act_scale != "static"):
            raise RuleError(
                f"rule {self.pattern!r}: act_offset (LSQ+) needs static activation quantization"
            )
        if self.kind not in RULE_KINDS:
            raise RuleError(
                f"rule {self.pattern!r}: kind {self.kind!r} unknown; expected one of {RULE_KINDS}"
            )
        if self.kind == "embedding" and self.act != "none":
            raise RuleError(
                f"rule {self.pattern!r}: an embedding table quantizes weights only; the rule asks "
                f"act={self.act!r} (use act='none')"
            )
        if self.weight_bits is None and self.act != "none":
            raise RuleError(
                f"rule {self.pattern!r}: a float (weight_bits=None) rule cannot quantize activations"
            )

    @property
    def act_bits(self) -> int | None:
        return ACT_MODES[self.act]

    def describe(self) -> str:
        if self.weight_bits is None:
            return "float"
        g = "per-channel" if self.group_size is None else f"g{self.group_size}"
        zp = "+zp" if self.zero_point else ""
        act = "a-float" if self.act == "none" else f"{self.act}-{self.act_scale}"
        return f"w{self.weight_bits}-{g}{zp}-{act}{'+offset' if self.act_offset else ''}"


def _w(bits, group=32, act="a16", **kw) -> QuantRule:
    return QuantRule(r"^llm/(layers/\d+/(attn|mlp)/|lm_head$)", bits, group, act=act, **kw)


def mixed_recipe(w2_layers: Sequence[int] = (1,)) -> tuple[QuantRule, ...]:
    """W8 (per channel) attention and LM head, W2 g32 MLPs of `w2_layers`, W4 g32 other MLPs; A16."""
    w2 = "|".join(str(i) for i in w2_layers)
    return (
        QuantRule(r"^llm/lm_head$", 8, None, act="a16", optional=True),
        QuantRule(r"^llm/layers/\d+/attn/", 8, None, act="a16"),
        QuantRule(rf"^llm/layers/({w2})/mlp/", 2, 32, act="a16"),
        QuantRule(r"^llm/layers/\d+/mlp/", 4, 32, act="a16"),
    )


# Named recipes (default scope: the LLM's linears; vision, projector and embeddings stay float).
RECIPES: dict[str, tuple[QuantRule, ...]] = {
    "w8a16": (_w(8, None),),
    "w8a8": (_w(8, None, act="a8"),),
    "w4a16_g32": (_w(4, 32),),
    "w4a16_g128": (_w(4, 128),),
    "w4a8_g32": (_w(4, 32, act="a8"),),
    "w3a16_g32": (_w(3, 32),),
    "w2a16_g32": (_w(2, 32),),
    "w4_g32": (_w(4, 32, act="none"),),
    "mixed": mixed_recipe(),
    # W4A16 g32 linears and the token embedding table (also the tied LM head) W8 per token row
    "w4a16_g32_emb_w8": (_w(4, 32), QuantRule(r"^llm/embed$", 8, None, kind="embedding")),
    # the whole model: LLM W4A16 g32; vision tower and projector W8A8 per channel. A8 there keeps
    # the fake-quant float sums exact (127^2 * K < 2^24 for K < 1040: the patch embedding's K = 588
    # fits); with A16 they exceed 2^24 and the mapping holds only to float rounding (~4e-4).
    "w4a16_g32_vit_w8a8": (
        _w(4, 32),
        QuantRule(r"^(vision|projector)/", 8, None, act="a8"),
    ),
}


def get_recipe(name: str) -> tuple[QuantRule, ...]:
    """A named rule list (RECIPES)."""
    if name not in RECIPES:
        raise RuleError(f"unknown quantization recipe {name!r}; expected one of {sorted(RECIPES)}")
    return RECIPES[name]


@dataclasses.dataclass(frozen=True)
class Site:
    """One linear module of the model: where it lives and the per-layer paths it stands for."""

    path: tuple  # its nnx path (stacked layers: no layer index)
    module: Linear | Embed
    names: tuple[str, ...]  # per-layer paths ('llm/layers/0/attn/q', ...): one unless stacked

    @property
    def weight(self) -> nnx.Variable:
        return self.module.embedding if isinstance(self.module, Embed) else self.module.kernel

    @property
    def stacked(self) -> bool:
        return self.weight.ndim == 3

    @property
    def kind(self) -> str:
        """The QuantRule.kind that may match this site."""
        return "embedding" if isinstance(self.module, Embed) else "linear"

    @property
    def in_features(self) -> int:
        """K of the product: an embedding table [vocab, D] is the tied head's [D, vocab] kernel."""
        shape = self.weight.shape[-2:]
        return shape[1] if isinstance(self.module, Embed) or self.module.out_in else shape[0]


def linear_sites(model: nnx.Module, cls: type = Linear) -> Iterator[Site]:
    """Every `cls` module of `model`, with the per-layer names rules are matched against."""
    for path, module in nnx.iter_modules(model):
        if not isinstance(module, cls):
            continue
        stacked = module.kernel.shape[0] if module.kernel.ndim == 3 else None
        yield Site(tuple(path), module, layer_names(path, stacked))


def weight_sites(model: nnx.Module) -> Iterator[Site]:
    """What rules can quantize: every Linear, then every token embedding table (Embed)."""
    yield from linear_sites(model)
    for path, module in nnx.iter_modules(model):
        if isinstance(module, Embed):
            yield Site(tuple(path), module, layer_names(path, None))


def layer_names(path, stacked: int | None) -> tuple[str, ...]:
    """The per-layer names of a module at `path`: one, or for `stacked` layers one per layer with
    its index inserted after the last 'layers' ('llm/layers/attn/q' -> 'llm/layers/0/attn/q', ...)."""
    parts = [str(p) for p in path]
    if stacked is None:
        return ("/".join(parts),)
    at = max(i for i, p in enumerate(parts) if p == "layers")
    return tuple("/".join([*parts[: at + 1], str(i), *parts[at + 1 :]]) for i in range(stacked))


def resolve_rules(
    sites: Sequence[Site], rules: Sequence[QuantRule]
) -> list[tuple[Site, QuantRule]]:
    """(site, rule) for every site a quantizing rule wins; errors name the rule or module."""
    if not rules:
        raise RuleError("no quantization rules given")
    wins = [0] * len(rules)
    matches = [0] * len(rules)
    chosen = []
    for site in sites:
        per_layer = []
        for name in site.names:
            hit = [
                i
                for i, r in enumerate(rules)
                if r.kind == site.kind and re.search(r.pattern, name)
            ]
            for i in hit:
                matches[i] += 1
            if hit:
                wins[hit[0]] += 1
            per_layer.append(hit[0] if hit else None)
        if len(set(per_layer)) > 1:
            detail = ", ".join(
                f"{n}: {'no rule' if i is None else repr(rules[i].pattern)}"
                for n, i in zip(site.names, per_layer, strict=True)
            )
            raise RuleError(
                f"rules give the stacked layers of {'/'.join(map(str, site.path))} different "
                f"settings ({detail}); layer-specific rules need separate layers "
                "(scan_layers=False)"
            )
        index = per_layer[0]
        if index is None or rules[index].weight_bits is None:
            continue
        rule = rules[index]
        k = site.in_features
        if rule.group_size is not None and k % rule.group_size:
            raise RuleError(
                f"rule {rule.pattern!r}: group_size {rule.group_size} does not divide the "
                f"{k} input features of {site.names[0]}"
            )
        chosen.append((site, rule))
    for i, rule in enumerate(rules):
        if wins[i] or rule.optional:
            continue
        if matches[i]:
            raise RuleError(
                f"rule {i} {rule.pattern!r} is shadowed: every linear it matches ({matches[i]}) "
                "is taken by an earlier rule"
            )
        some = ", ".join([s.names[0] for s in sites if s.kind == rule.kind][:6])
        raise RuleError(
            f"rule {i} {rule.pattern!r} matches no {rule.kind} module (paths look like: {some}, ...)"
        )
    return chosen
