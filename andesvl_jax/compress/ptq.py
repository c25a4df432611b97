"""Post-training quantization baselines on the same rules: round-to-nearest (absmax or MSE-clipped)
and GPTQ (Frantar et al. 2022), producing what QAT produces — steps s, zero points and codes c.

A PTQ result is written into a `quantize_model`-ed model as kernel := c · s with the step params set
to s (and z): the QAT fake-quant of that kernel gives back exactly c, so PTQ and QAT models share
the forward, the deployment (compress/deploy.py) and the evaluation. GPTQ follows the reference
algorithm transposed to our [K, N] kernels: H = 2·XᵀX/n from calibration inputs, dampening
λ·mean(diag H), dead inputs zeroed, the upper Cholesky factor of H⁻¹, rows (input features) quantized
one at a time with the error spread over the rows not yet quantized, lazily in blocks of 128 rows.
act-order permutes rows by decreasing diag(H); with groups it then uses static groups (every group's
step from the original weights), so groups stay contiguous along K as the packed format needs.
Numpy float64 on the host (the Cholesky and the row loop); per-layer sequential: layer i's inputs
come from the model whose layers < i are already quantized.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.compress.calibrate import (
    calibrate_activations,
    get_layer,
    layer_index,
    observe,
    set_layer,
)
from andesvl_jax.compress.lsq import absmax_weight_init, mse_weight_init, weight_range
from andesvl_jax.compress.rules import QuantRule

CLIPS = {"absmax": absmax_weight_init, "mse": mse_weight_init}
METHODS = ("rtn", "gptq")


def _params(w: np.ndarray, rule: QuantRule, clip: str, one_group: bool = False):
    """Steps [G, N] and zero points (or None) of w [K, N] by `clip` (absmax | mse); one_group:
    all of w's rows are one group."""
    if clip not in CLIPS:
        raise ValueError(f"unknown clipping {clip!r}; expected one of {sorted(CLIPS)}")
    group = None if one_group else rule.group_size
    s, z = CLIPS[clip](jnp.asarray(w, jnp.float32), rule.weight_bits, group, rule.zero_point)
    return np.asarray(s, np.float64), None if z is None else np.asarray(z, np.float64)


def quantize_rows(w: np.ndarray, s: np.ndarray, z: np.ndarray | None, bits: int) -> np.ndarray:
    """Signed codes of rows w [..., N] with steps s [N] (and zero points z): round(w/s), clipped."""
    qn, qp = weight_range(bits, z is not None)
    lo, hi = (-qn, qp) if z is None else (-z, qp - z)
    s32 = s.astype(np.float32)
    return np.clip(np.round(w.astype(np.float32) / s32), lo, hi).astype(np.float64)


def rtn(w, rule: QuantRule, clip: str = "absmax"):
    """Round-to-nearest: w [K, N] -> (signed codes [K, N], steps [G, N], zero points or None)."""
    w = np.asarray(w, np.float64)
    s, z = _params(w, rule, clip)
    group = w.shape[0] if rule.group_size is None else rule.group_size
    rows = np.arange(w.shape[0]) // group
    codes = quantize_rows(w, s[rows], None if z is None else z[rows], rule.weight_bits)
    return codes, s, z


def zero_dead_inputs(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """In place: inputs never active (diag H = 0) get H_jj = 1 and zero weight rows; -> their mask."""
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[dead] = 0.0
    return dead


def inverse_hessian_factor(h: np.ndarray, damp: float) -> np.ndarray:
    """The upper Cholesky factor U of (H + λ·mean(diag H)·I)⁻¹ = UᵀU (GPTQ and SparseGPT)."""
    h = h + damp * np.mean(np.diag(h)) * np.eye(h.shape[0])
    return np.linalg.cholesky(np.linalg.inv(h)).T


def gptq(
    w,
    hessian,
    rule: QuantRule,
    *,
    clip: str = "absmax",
    damp: float = 0.01,
    block: int = 128,
    act_order: bool = False,
):
    """GPTQ: w [K, N], hessian [K, K] (2·XᵀX/n) -> (signed codes [K, N], steps [G, N], zeros)."""
    w = np.array(w, np.float64)
    h = np.array(hessian, np.float64)
    k, n = w.shape
    group = k if rule.group_size is None else rule.group_size
    zero_dead_inputs(w, h)
    static = rule.group_size is None or act_order
    s = np.zeros((k // group, n))
    z = np.zeros((k // group, n)) if rule.zero_point else None
    if static:  # per channel, or act-order: every group's step from the (dead-zeroed) weights
        s, z = _params(w, rule, clip)
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    w, h = w[perm], h[perm][:, perm]
    hinv = inverse_hessian_factor(h, damp)
    codes = np.zeros_like(w)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1, err = w[i1:i2].copy(), np.zeros((i2 - i1, n))
        for i in range(i2 - i1):
            row = perm[i1 + i]
            g = row // group
            if not static and row % group == 0:  # group start: its step from the updated rows
                sg, zg = _params(w1[i : i + group], rule, clip, one_group=True)
                s[g], z_row = sg[0], None if zg is None else zg[0]
                if z is not None:
                    z[g] = z_row
            c = quantize_rows(w1[i], s[g], None if z is None else z[g], rule.weight_bits)
            codes[i1 + i] = c
            e = (w1[i] - c * s[g].astype(np.float32)) / hinv[i1 + i, i1 + i]
            w1[i:] -= np.outer(hinv[i1 + i, i1 + i : i2], e)
            err[i] = e
        w[i2:] -= hinv[i1:i2, i2:].T @ err
    out = np.zeros_like(codes)
    out[perm] = codes
    return out, s, z


def reconstruction_error(x, w, codes, s, group: int | None) -> float:
    """||x w − x ŵ||² / ||x w||² with ŵ = codes · s per group (x [M, K], w [K, N])."""
    k = w.shape[0]
    rows = np.arange(k) // (k if group is None else group)
    wh = codes * s[rows].astype(np.float32)
    ref = x @ w
    return float(np.sum((ref - x @ wh) ** 2) / np.sum(ref**2))


def _write(module, row, codes, s, z) -> None:
    """kernel := codes · s, steps := s (the QAT forward then reproduces `codes` exactly)."""
    k = codes.shape[0]
    rows = np.arange(k) // (k if module.rule.group_size is None else module.rule.group_size)
    set_layer(module.kernel, row, (codes * s[rows].astype(np.float32)).astype(np.float32))
    set_layer(module.w_scale, row, s.astype(np.float32))
    if z is not None:
        set_layer(module.w_zero, row, z.astype(np.float32))


def _layer_groups(names) -> list[list[str]]:
    """Per-layer names grouped by transformer layer, in forward order (vision, projector, LLM)."""
    tower = {"vision": 0, "projector": 1, "llm": 2}
    groups: dict[tuple, list[str]] = {}
    for name in names:
        m = re.match(r"^(.*?/layers/(\d+))/", name)
        key = (
            tower.get(name.split("/")[0], 3),
            int(m.group(2)) if m else 1 << 30,
            m and m.group(1),
        )
        groups.setdefault(key, []).append(name)
    return [groups[key] for key in sorted(groups, key=lambda t: (t[0], t[1], str(t[2])))]


def _hessians(model, run, wanted) -> dict[str, np.ndarray]:
    def gram(x):
        x = x.astype(np.float64)
        return x.T @ x, x.shape[0]

    seen = observe(model, run, set(wanted), gram)
    missing = sorted(set(wanted) - set(seen))
    if missing:
        raise ValueError(f"calibration forwards never reached {missing[:5]}: no Hessian for GPTQ")
    out = {}
    for name, parts in seen.items():
        total = sum(p[1] for p in parts)
        out[name] = 2.0 * sum(p[0] for p in parts) / max(total, 1)
    return out


def apply_ptq(
    model: nnx.Module,
    method: str = "rtn",
    run: Callable[[nnx.Module], object] | None = None,
    *,
    clip: str = "absmax",
    act_order: bool = False,
    damp: float = 0.01,
    block: int = 128,
    act_method: str = "absmax",
) -> nnx.Module:
    """Quantize the weights of a `quantize_model`-ed model by RTN or GPTQ (in place), then set the
    static activation steps from `run(model)` (calibration forwards; needed for GPTQ and A8/A16)."""
    if method not in METHODS:
        raise ValueError(f"unknown PTQ method {method!r}; expected one of {METHODS}")
    index = layer_index(model)
    if not index:
        raise ValueError("the model has no QuantLinear: call quantize_model first")
    if method == "gptq" and run is None:
        raise ValueError("GPTQ needs calibration forwards: pass run=lambda model: ...")
    for group in _layer_groups(index):
        hess = _hessians(model, run, group) if method == "gptq" else {}
        for name in group:
            module, row = index[name]
            w = np.asarray(get_layer(module.kernel, row), np.float64)
            if method == "rtn":
                codes, s, z = rtn(w, module.rule, clip)
            else:
                codes, s, z = gptq(
                    w,
                    hess[name],
                    module.rule,
                    clip=clip,
                    damp=damp,
                    block=block,
                    act_order=act_order,
                )
            _write(module, row, codes, s, z)
    if any(m.a_scale is not None for m, _ in index.values()):
        if run is None:
            raise ValueError("static activation quantization needs calibration forwards (run=...)")
        calibrate_activations(model, run, act_method)
    return model
