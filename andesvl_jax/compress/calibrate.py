"""Calibration forwards: record what each quantized linear sees, set static activation steps.

`run(model)` is any function that runs the model on calibration batches (eager or jitted, stacked
or separate layers). While it runs, every QuantLinear is in observing mode: weights fake-quantized,
activations float, inputs recorded per layer (compress/recorder.py).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.compress.lsq import act_init
from andesvl_jax.compress.qlinear import QuantLinear, quant_sites
from andesvl_jax.compress.recorder import recording

SAMPLE = 16384  # activation values kept per recorded call for MSE search (plus the extremes)


def layer_index(model: nnx.Module) -> dict[str, tuple[QuantLinear, int | None]]:
    """Per-layer name -> (its QuantLinear, layer row in stacked params or None)."""
    out = {}
    for site in quant_sites(model):
        for i, name in enumerate(site.names):
            out[name] = (site.module, i if site.stacked else None)
    return out


def set_layer(var: nnx.Variable, row: int | None, value) -> None:
    """var[row] = value for stacked params (row None: the whole value)."""
    value = jnp.asarray(value, var[...].dtype)
    var.set_value(value if row is None else var[...].at[row].set(value))


def get_layer(var: nnx.Variable, row: int | None):
    return var[...] if row is None else var[...][row]


def observe(
    model: nnx.Module,
    run: Callable[[nnx.Module], object],
    wanted: set[str] | None = None,
    reduce: Callable | None = None,
) -> dict[str, list[np.ndarray]]:
    """Run `run(model)` with every QuantLinear observing; per-layer name -> recorded inputs [M, K]."""
    modules = [s.module for s in quant_sites(model)]
    if not modules:
        raise ValueError("the model has no QuantLinear: call quantize_model first")
    for m in modules:
        m.observing = True
    try:
        with recording(wanted, reduce) as rec:
            run(model)
    finally:
        for m in modules:
            m.observing = False
    return dict(rec.data)


def _summary(x: np.ndarray) -> np.ndarray:
    """The extremes of x and a fixed-seed sample of its values (bounded memory per call)."""
    flat = x.reshape(-1)
    pick = np.random.default_rng(0).choice(flat.size, min(flat.size, SAMPLE), replace=False)
    return np.concatenate([[flat.min(), flat.max()], flat[pick]])


def calibrate_activations(
    model: nnx.Module, run: Callable[[nnx.Module], object], method: str = "absmax"
) -> dict[str, float]:
    """Set every static activation step (and LSQ+ offset) from calibration forwards.

    method: "absmax", "mse" or "lsq" (lsq.act_init). Returns per-layer name -> step. A linear the
    forwards never reach is an error naming it.
    """
    index = layer_index(model)
    wanted = {n for n, (m, _) in index.items() if m.a_scale is not None}
    if not wanted:
        return {}
    seen = observe(model, run, wanted, _summary)
    missing = sorted(wanted - set(seen))
    if missing:
        raise ValueError(
            f"calibration forwards never reached {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            ": their activation steps cannot be set"
        )
    steps = {}
    for name in sorted(wanted):
        module, row = index[name]
        rule = module.rule
        s, beta = act_init(np.concatenate(seen[name]), rule.act_bits, rule.act_offset, method)
        set_layer(module.a_scale, row, s)
        if module.a_offset is not None:
            set_layer(module.a_offset, row, beta)
        steps[name] = float(s)
    return steps
