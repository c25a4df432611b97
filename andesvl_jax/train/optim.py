"""Optimizer from config: AdamW, warmup + cosine/linear/constant schedule, global-norm clipping,
weight decay only on matrices (not norms, biases, position tables), per-module LR multipliers, and
the skip of a non-finite step — fused, one elementwise pass per parameter (`AdamW`; also as an optax
GradientTransformation, `AdamW.as_gradient_transformation`, to chain with other transformations)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from andesvl_jax.compress.qlinear import QUANT_LEAVES

NO_DECAY_LEAVES = ("scale", "bias", "pos_embed")

SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "cosine": lambda lr, warmup, steps, end: optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), max(steps, warmup + 1), lr * end
    ),
    "linear": lambda lr, warmup, steps, end: optax.join_schedules(
        [
            optax.linear_schedule(0.0, lr, max(warmup, 1)),
            optax.linear_schedule(lr, lr * end, max(steps - warmup, 1)),
        ],
        [max(warmup, 1)],
    ),
    "constant": lambda lr, warmup, steps, end: optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)],
        [max(warmup, 1)],
    ),
}


def _path_names(path) -> list[str]:
    """The module/attribute names of a parameter's path. An `nnx.State` path ends in the
    Variable's attribute and then 'value' (`..., 'q_norm', 'scale', 'value'`): that 'value' is
    dropped, so the last name is the parameter's own (it used to be 'value' for every leaf, and
    norm scales and biases took weight decay)."""
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return names[:-1] if names and names[-1] == "value" else names


def _is_quant(names: list[str]) -> bool:
    """A QAT step size / zero point."""
    return bool(names) and names[-1] in QUANT_LEAVES


def decay_mask(params):
    """True for weights that take weight decay (kernels and embeddings; never QAT step sizes)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: (
            _path_names(p)[-1] not in NO_DECAY_LEAVES
            and "pos_embed" not in _path_names(p)
            and not _is_quant(_path_names(p))
        ),
        params,
    )


def module_labels(params):
    """Top-level module name of every parameter ('vision', 'projector', 'llm'); 'quant' for the
    QAT step sizes and zero points (their own LR multiplier)."""

    def label(p, _):
        names = _path_names(p)
        return "quant" if _is_quant(names) else names[0]

    return jax.tree_util.tree_map_with_path(label, params)


def learning_rate_schedule(cfg, steps: int) -> optax.Schedule:
    if cfg.schedule not in SCHEDULES:
        raise ValueError(
            f"optim.schedule {cfg.schedule!r} unknown; expected one of {sorted(SCHEDULES)}"
        )
    return SCHEDULES[cfg.schedule](cfg.lr, cfg.warmup_steps, steps, cfg.end_lr_factor)


class AdamWState(NamedTuple):
    count: jax.Array  # updates applied so far (skipped steps do not count)
    mu: Any  # first moments, shaped like the parameters
    nu: Any  # second moments


@dataclasses.dataclass(frozen=True)
class AdamW:
    """AdamW with global-norm clipping, per-module LR multipliers and weight-decay masks, applied
    only when the step is good (`apply`), in one fused elementwise pass per parameter.

    The update equals optax.chain(clip_by_global_norm(clip_norm), multi_transform({module:
    adamw(schedule * multiplier, mask=decay_mask)})) (tests/train/test_optim.py). It is written out
    because of the skip: selecting (new, old) after optax's update made XLA read the old moments
    after writing the new ones in place, so it copied every moment buffer and materialised every
    update: 7.2 s per step for Qwen3-0.6B's parameters on CPU against 2.1 s here
    (benchmarks/optimizer_step.py, docs/benchmarks.md). Here the moments are selected first and the
    parameter update reads the selected ones.
    """

    schedule: optax.Schedule
    b1: float
    b2: float
    eps: float
    weight_decay: float
    clip_norm: float  # <= 0: no clipping
    multipliers: dict[str, float]

    def init(self, params) -> AdamWState:
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return AdamWState(jnp.zeros((), jnp.int32), zeros(), zeros())

    def learning_rate(self, state: AdamWState) -> jax.Array:
        return self.schedule(state.count)

    def update(self, grads, state: AdamWState, params, grad_norm, apply) -> tuple[Any, AdamWState]:
        """-> (params, state) after one step, or unchanged (bit for bit) when `apply` is False.

        grad_norm: the global norm of `grads` (the caller has it for its finiteness check)."""
        scale = jnp.ones((), jnp.float32)
        if self.clip_norm > 0:
            scale = jnp.where(grad_norm < self.clip_norm, 1.0, self.clip_norm / grad_norm)
        count = state.count + 1
        c1 = 1 - jnp.asarray(self.b1, jnp.float32) ** count
        c2 = 1 - jnp.asarray(self.b2, jnp.float32) ** count
        lr = self.learning_rate(state)
        labels, decays = module_labels(params), decay_mask(params)

        def leaf(p, g, mu, nu, label, decay):
            g = (g * scale).astype(mu.dtype)
            mu = jnp.where(apply, self.b1 * mu + (1 - self.b1) * g, mu)
            nu = jnp.where(apply, self.b2 * nu + (1 - self.b2) * g * g, nu)
            step = (mu / c1) / (jnp.sqrt(nu / c2) + self.eps)
            if decay and self.weight_decay:
                step = step + self.weight_decay * p
            new = p - (lr * self.multipliers.get(label, 1.0)) * step
            return jnp.where(apply, new.astype(p.dtype), p), mu, nu

        out = jax.tree.map(leaf, params, grads, state.mu, state.nu, labels, decays)
        pick = lambda i: jax.tree.map(lambda o: o[i], out, is_leaf=lambda o: isinstance(o, tuple))  # noqa: E731
        return pick(0), AdamWState(jnp.where(apply, count, state.count), pick(1), pick(2))

    def as_gradient_transformation(self) -> optax.GradientTransformationExtraArgs:
        """The same step as an optax transformation (updates = new params - params), so it chains
        with other optax transformations; a step whose gradient norm is not finite gives zero
        updates and leaves the state as it was, as `update(apply=False)` does."""

        def update(grads, state, params=None, **extra):
            if params is None:
                raise ValueError("the fused AdamW needs params (weight decay and module labels)")
            grad_norm = optax.tree.norm(grads)
            new, state = self.update(grads, state, params, grad_norm, jnp.isfinite(grad_norm))
            return jax.tree.map(lambda n, p: n - p, new, params), state

        return optax.GradientTransformationExtraArgs(self.init, update)


def make_optimizer(cfg, steps: int) -> AdamW:
    """cfg: the `optim` ConfigDict -> the optimizer over the trainable params."""
    return AdamW(
        learning_rate_schedule(cfg, steps),
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        clip_norm=cfg.clip_norm,
        multipliers=dict(cfg.lr_multipliers),
    )
