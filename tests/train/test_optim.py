"""The fused AdamW equals optax's clip + per-module AdamW with decay masks, and a skipped step
changes nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from andesvl_jax.configs import base_config
from andesvl_jax.train.optim import decay_mask, make_optimizer, module_labels


def params_and_grads(seed: int, grad_scale: float):
    rng = np.random.default_rng(seed)
    shapes = {
        "llm": {"layers": {"0": {"kernel": (6, 5), "scale": (5,)}}, "embed": (11, 5)},
        "vision": {"pos_embed": (4, 5), "proj": {"kernel": (5, 3), "bias": (3,)}},
    }
    arrays = lambda scale: jax.tree.map(  # noqa: E731
        lambda s: jnp.asarray(rng.normal(size=s) * scale, jnp.float32),
        shapes,
        is_leaf=lambda s: isinstance(s, tuple),
    )
    return arrays(1.0), [arrays(grad_scale) for _ in range(6)]


def optax_reference(cfg, schedule, modules):
    def adamw(scale):
        return optax.adamw(
            lambda s: schedule(s) * scale,
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=decay_mask,
        )

    multipliers = dict(cfg.lr_multipliers)
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.multi_transform({m: adamw(multipliers.get(m, 1.0)) for m in modules}, module_labels),
    )


@pytest.mark.parametrize("grad_scale", [0.01, 10.0])  # clipping off / binding
def test_fused_adamw_matches_optax(grad_scale):
    cfg = base_config().optim
    cfg.update(lr=1e-2, warmup_steps=2, weight_decay=0.1, clip_norm=1.0, schedule="cosine")
    cfg.lr_multipliers = {"vision": 0.3, "llm": 1.0}
    ours = make_optimizer(cfg, steps=6)
    ref = optax_reference(cfg, ours.schedule, ("llm", "vision"))
    params, grads = params_and_grads(0, grad_scale)
    p_ours, s_ours = params, ours.init(params)
    p_ref, s_ref = params, ref.init(params)
    update = jax.jit(ours.update)
    for g in grads:
        p_ours, s_ours = update(g, s_ours, p_ours, optax.tree.norm(g), True)
        u, s_ref = ref.update(g, s_ref, p_ref)
        p_ref = optax.apply_updates(p_ref, u)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7), p_ours, p_ref)
    assert int(s_ours.count) == len(grads)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p_ours, params)
    assert min(jax.tree.leaves(moved)) > 1e-4  # every parameter trained


def test_skipped_step_changes_nothing():
    cfg = base_config().optim
    ours = make_optimizer(cfg, steps=10)
    params, grads = params_and_grads(1, 1.0)
    state = ours.init(params)
    params, state = ours.update(grads[0], state, params, optax.tree.norm(grads[0]), True)
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads[1])
    new_params, new_state = ours.update(bad, state, params, jnp.float32(jnp.nan), False)
    for a, b in zip(
        jax.tree.leaves((new_params, new_state)), jax.tree.leaves((params, state)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
