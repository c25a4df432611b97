"""Optimizer from config: AdamW, warmup + cosine/linear/constant schedule, global-norm clipping,
weight decay only on matrices (not norms, biases, position tables), per-module LR multipliers."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

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
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def decay_mask(params):
    """True for weights that take weight decay (kernels and embeddings)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: (
            _path_names(p)[-1] not in NO_DECAY_LEAVES and "pos_embed" not in _path_names(p)
        ),
        params,
    )


def module_labels(params):
    """Top-level module name of every parameter ('vision', 'projector', 'llm')."""
    return jax.tree_util.tree_map_with_path(lambda p, _: _path_names(p)[0], params)


def learning_rate_schedule(cfg, steps: int) -> optax.Schedule:
    if cfg.schedule not in SCHEDULES:
        raise ValueError(
            f"optim.schedule {cfg.schedule!r} unknown; expected one of {sorted(SCHEDULES)}"
        )
    return SCHEDULES[cfg.schedule](cfg.lr, cfg.warmup_steps, steps, cfg.end_lr_factor)


def make_optimizer(
    cfg, steps: int, modules: tuple[str, ...]
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """cfg: the `optim` ConfigDict. Returns (optimizer over the trainable params, base LR schedule)."""
    schedule = learning_rate_schedule(cfg, steps)
    multipliers = dict(cfg.lr_multipliers)

    def adamw(scale: float):
        return optax.adamw(
            lambda s: schedule(s) * scale,
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=decay_mask,
        )

    per_module = optax.multi_transform(
        {m: adamw(multipliers.get(m, 1.0)) for m in modules}, module_labels
    )
    chain = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    return optax.chain(*chain, per_module), schedule
