"""Weight pruning: magnitude, Wanda and SparseGPT behind one registry, for unstructured and N:M
patterns (compress/masks.py), with per-layer sparsity from regex rules like the quantization rules.

Methods work on our [K, N] kernels (rows = input features) and return (new kernel, bool mask):
- magnitude: score |W|.
- Wanda (Sun et al. 2023): score |W_jn| · ‖X_j‖, the input norm from calibration activations, compared
  within each output column. ‖X_j‖² ∝ H_jj with H = 2·XᵀX/n, so it reuses the GPTQ Hessian.
- SparseGPT (Frantar & Alistarh 2023): the OBS update with the upper Cholesky factor U of H⁻¹ (ptq's
  `inverse_hessian_factor`), rows taken in order in lazy blocks; a block's mask is chosen by
  w²/U_jj² (unstructured: the block's lowest fraction; N:M: per m rows), each pruned row's error
  spread over the later rows.

`prune_model` runs on a `quantize_model`-ed model (the kept values are LSQ fake-quantized, so what is
trained is what is stored): matching QuantLinears become `SparseLinear`s (a fixed `SparseMask`
applied in the forward, so pruned weights get zero gradient and stay zero), pruned per transformer
layer in forward order, each layer's calibration inputs coming from the already-pruned model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.compress.calibrate import get_layer, layer_index, set_layer
from andesvl_jax.compress.lsq import weight_codes
from andesvl_jax.compress.masks import Pattern, mask_from_scores, parse_pattern
from andesvl_jax.compress.ptq import (
    _hessians,
    _layer_groups,
    inverse_hessian_factor,
    zero_dead_inputs,
)
from andesvl_jax.compress.qlinear import (
    QuantLinear,
    QuantRule,
    init_weight_scales,
    quant_sites,
    quantize_model,
    replace_module,
)


class SparseMask(nnx.Variable):
    """A fixed pruning mask (1 kept, 0 pruned) of a kernel: not trained (train/stages.py puts
    variables with `frozen_in_training` in the frozen state)."""

    frozen_in_training = True


class SparseLinear(QuantLinear):
    """A QuantLinear whose kernel is multiplied by a fixed mask before fake quantization."""

    def __init__(self, qlin: QuantLinear):
        for key, value in vars(qlin).items():
            if not key.startswith("_"):
                setattr(self, key, value)
        self.mask = SparseMask(jnp.ones(qlin.kernel.shape, jnp.float32))

    def quantized_weight(self):
        kernel = self.kernel[...] * self.mask[...].astype(self.kernel.dtype)
        zero = None if self.w_zero is None else self.w_zero[...]
        return weight_codes(
            kernel, self.w_scale[...], zero, self.rule.weight_bits, self.rule.group_size
        )


# ---- methods: (w [K, N] float64, hessian [K, K] or None, pattern) -> (w', mask) ------------------


def magnitude(w, hessian, pattern: Pattern, where: str = ""):
    mask = mask_from_scores(np.abs(w), pattern, where)
    return w * mask, mask


def wanda(w, hessian, pattern: Pattern, where: str = ""):
    norms = np.sqrt(np.maximum(np.diag(hessian), 0.0))
    mask = mask_from_scores(np.abs(w) * norms[:, None], pattern, where)
    return w * mask, mask


def sparsegpt(w, hessian, pattern: Pattern, where: str = "", *, block: int = 128, damp=0.01):
    w = np.array(w, np.float64)
    h = np.array(hessian, np.float64)
    k, n = w.shape
    if pattern.kind == "nm" and block % pattern.m:
        raise ValueError(f"{where}: SparseGPT block {block} is not a multiple of m={pattern.m}")
    zero_dead_inputs(w, h)
    hinv = inverse_hessian_factor(h, damp)
    mask = np.ones((k, n), bool)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1, u1 = w[i1:i2].copy(), hinv[i1:i2, i1:i2]
        err = np.zeros_like(w1)
        d2 = np.diag(u1)[:, None] ** 2
        if pattern.kind == "unstructured":  # the block's lowest fraction, chosen up front
            score = w1**2 / d2
            cut = int(score.size * pattern.sparsity)
            keep = np.ones(score.size, bool)
            keep[np.argsort(score, axis=None, kind="stable")[:cut]] = False
            mask[i1:i2] = keep.reshape(score.shape)
        for i in range(i2 - i1):
            if pattern.kind == "nm" and i % pattern.m == 0:  # from the already-updated rows
                rows = slice(i, i + pattern.m)
                mask[i1 + i : i1 + i + pattern.m] = mask_from_scores(
                    w1[rows] ** 2 / d2[rows], pattern, where
                )
            q = w1[i] * mask[i1 + i]
            e = (w1[i] - q) / u1[i, i]
            w1[i:] -= np.outer(u1[i, i:], e)
            w1[i] = q
            err[i] = e
        w[i1:i2] = w1
        w[i2:] -= hinv[i1:i2, i2:].T @ err
    return w * mask, mask


PRUNERS: dict[str, Callable] = {"magnitude": magnitude, "wanda": wanda, "sparsegpt": sparsegpt}
NEEDS_CALIBRATION = ("wanda", "sparsegpt")


# ---- rules ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SparsityRule:
    """Linears whose per-layer path matches `pattern` (re.search) are pruned to `sparsity`: an N:M
    pattern ('1:4', '2:4', '2:8'), an unstructured fraction (0.75) or 'u75'; None keeps them dense."""

    pattern: str
    sparsity: str | float | None

    def parsed(self) -> Pattern | None:
        if self.sparsity is None:
            return None
        return parse_pattern(self.sparsity, f"sparsity rule {self.pattern!r}")


_LLM = r"^llm/layers/\d+/(attn|mlp)/"
SPARSITY_RECIPES: dict[str, tuple[SparsityRule, ...]] = {
    "u50": (SparsityRule(_LLM, 0.5),),
    "u75": (SparsityRule(_LLM, 0.75),),
    "2:4": (SparsityRule(_LLM, "2:4"),),
    "1:4": (SparsityRule(_LLM, "1:4"),),
    "2:8": (SparsityRule(_LLM, "2:8"),),
    # sparsity placed per layer type: attention at 50 %, MLPs at 87.5 % — 75 % on average when
    # the MLPs hold 2/3 of the weights (the tiny preset; ~72 % at the Qwen3-0.6B shape)
    "attn50_mlp875": (
        SparsityRule(r"^llm/layers/\d+/attn/", 0.5),
        SparsityRule(r"^llm/layers/\d+/mlp/", 0.875),
    ),
}


def get_sparsity_recipe(rules) -> tuple[SparsityRule, ...]:
    if not isinstance(rules, str):
        return tuple(rules)
    if rules not in SPARSITY_RECIPES:
        raise ValueError(
            f"unknown sparsity recipe {rules!r}; expected one of {sorted(SPARSITY_RECIPES)}"
        )
    return SPARSITY_RECIPES[rules]


def resolve_sparsity(names, rules) -> dict[str, Pattern]:
    """Per-layer name -> pattern (first matching rule wins; a rule matching nothing is an error)."""
    rules = get_sparsity_recipe(rules)
    out, used = {}, [False] * len(rules)
    for name in names:
        hit = next((i for i, r in enumerate(rules) if re.search(r.pattern, name)), None)
        if hit is None:
            continue
        used[hit] = True
        pattern = rules[hit].parsed()
        if pattern is not None:
            out[name] = pattern
    for rule, u in zip(rules, used, strict=True):
        if not u:
            raise ValueError(f"sparsity rule {rule.pattern!r} matches no quantized linear")
    return out


def sparse_quant_rules(bits: int = 4, group: int = 64) -> tuple[QuantRule, ...]:
    """The weight-only LSQ rule of the kept values (the packed format's groups are 64 or 128)."""
    return (QuantRule(_LLM, bits, group, act="none"),)


# ---- model ---------------------------------------------------------------------------------------


def sparse_sites(model: nnx.Module) -> list:
    return [s for s in quant_sites(model) if isinstance(s.module, SparseLinear)]


def to_sparse(model: nnx.Module) -> nnx.Module:
    """Every QuantLinear of `model` becomes a SparseLinear with an all-ones mask (in place)."""
    for site in quant_sites(model):
        if not isinstance(site.module, SparseLinear):
            replace_module(model, site.path, SparseLinear(site.module))
    return model


def sparse_structure(bits: int, group: int) -> Callable[[nnx.Module], nnx.Module]:
    """module -> the sparse stage's structure of it (SparseLinears under `sparse_quant_rules`):
    what a sparse run's checkpoint is restored into."""
    return lambda m: to_sparse(quantize_model(m, sparse_quant_rules(bits, group)))


def prune_model(
    model: nnx.Module,
    rules="u75",
    method: str = "magnitude",
    run: Callable[[nnx.Module], object] | None = None,
    **method_kw,
) -> dict[str, Pattern]:
    """Prune a `quantize_model`-ed model in place by `method` under sparsity `rules` (a recipe name
    or SparsityRules); `run(model)` runs calibration forwards (Wanda, SparseGPT). -> name -> pattern."""
    if method not in PRUNERS:
        raise ValueError(f"unknown pruning method {method!r}; expected one of {sorted(PRUNERS)}")
    if method in NEEDS_CALIBRATION and run is None:
        raise ValueError(f"{method} needs calibration forwards: pass run=lambda model: ...")
    to_sparse(model)
    index = layer_index(model)
    if not index:
        raise ValueError("the model has no QuantLinear: call quantize_model first")
    patterns = resolve_sparsity(list(index), rules)
    for group in _layer_groups(patterns):
        hess = _hessians(model, run, group) if method in NEEDS_CALIBRATION else {}
        for name in group:
            module, row = index[name]
            w = np.asarray(get_layer(module.kernel, row), np.float64)
            w2, mask = PRUNERS[method](w, hess.get(name), patterns[name], name, **method_kw)
            set_layer(module.kernel, row, w2.astype(np.float32))
            set_layer(module.mask, row, mask.astype(np.float32))
            init_weight_scales(module)
    return patterns


def model_masks(model: nnx.Module) -> dict[str, np.ndarray]:
    """Per-layer name -> bool mask [K, N] of every SparseLinear."""
    out = {}
    for site in sparse_sites(model):
        m = np.asarray(site.module.mask[...]) > 0
        for i, name in enumerate(site.names):
            out[name] = m[i] if site.stacked else m
    return out
