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


def test_fused_adamw_as_optax_transformation_chains():
    """The fused step as an optax GradientTransformation: optax.apply_updates reproduces the fused
    parameters, it chains (a following optax.scale halves every update), and a non-finite
    gradient gives zero updates and an unchanged state."""
    cfg = base_config().optim
    cfg.update(lr=1e-2, warmup_steps=1, weight_decay=0.1, clip_norm=1.0)
    ours = make_optimizer(cfg, steps=6)
    tx = ours.as_gradient_transformation()
    halved = optax.chain(tx, optax.scale(0.5))
    params, grads = params_and_grads(1, 1.0)
    p_fused, s_fused = params, ours.init(params)
    p_tx, s_tx = params, tx.init(params)
    s_half = halved.init(params)
    for g in grads[:3]:
        fused_next, s_fused = ours.update(g, s_fused, p_fused, optax.tree.norm(g), True)
        u, s_tx = jax.jit(tx.update)(g, s_tx, p_tx)
        u_half, s_half = halved.update(g, s_half, p_tx)
        for a, b in zip(jax.tree.leaves(u_half), jax.tree.leaves(u), strict=True):
            np.testing.assert_allclose(a, 0.5 * b, rtol=1e-5, atol=1e-8)
        p_tx = optax.apply_updates(p_tx, u)
        for a, b in zip(jax.tree.leaves(p_tx), jax.tree.leaves(fused_next), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        p_fused = fused_next
    bad = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), grads[3])
    u, s_after = tx.update(bad, s_tx, p_tx)
    assert all(not np.any(leaf) for leaf in jax.tree.leaves(u))
    for a, b in zip(jax.tree.leaves(s_after), jax.tree.leaves(s_tx), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(grads[0], s_tx)


def test_decay_mask_on_a_real_model_state_spares_norms_biases_and_position_tables():
    """On an `nnx.State` every path ends in 'value': the mask must look past it (it once decayed
    every leaf, norm scales included)."""
    from flax import nnx

    from andesvl_jax.config import get_preset
    from andesvl_jax.models.andesvl import AndesVL

    _, state = nnx.split(AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0)))
    mask = {
        jax.tree_util.keystr(path): decays
        for path, decays in jax.tree_util.tree_leaves_with_path(decay_mask(state))
    }
    spared = [k for k, v in mask.items() if not v]
    decayed = [k for k, v in mask.items() if v]
    assert any("'q_norm'" in k and "'scale'" in k for k in spared), spared
    assert any("'final_norm'" in k for k in spared), spared
    assert all("'kernel'" in k or "'embedding'" in k for k in decayed), decayed
    assert any("'kernel'" in k for k in decayed) and any("'embedding'" in k for k in decayed)
    assert not any("norm" in k or "'bias'" in k or "pos_embed" in k for k in decayed), decayed
