"""The functional objective (functional tokens weighted) and the plugin registration."""

import jax.numpy as jnp
import numpy as np
import pytest

from andesvl_jax.agent.stage import functional_objective
from andesvl_jax.configs import base_config
from andesvl_jax.train.losses import token_cross_entropy
from andesvl_jax.train.plugins import PluginError, load_plugins


class _Batch:
    def __init__(self, rng, v=20):
        self.input_ids = jnp.asarray(rng.integers(0, v, (2, 6)))
        self.targets = jnp.asarray(rng.integers(0, v, (2, 6)))
        self.targets = self.targets.at[0, 2].set(17).at[1, 4].set(18)
        self.loss_mask = (
            jnp.asarray(rng.random((2, 6)) > 0.3, jnp.float32).at[0, 2].set(1).at[1, 4].set(1)
        )
        self.images = self.positions = self.segment_ids = None


class _Model:
    def __init__(self, logits):
        self.logits = logits

    def __call__(self, *a, **k):
        return self.logits, None


def test_functional_tokens_weigh_more():
    rng = np.random.default_rng(0)
    batch = _Batch(rng)
    logits = jnp.asarray(rng.standard_normal((2, 6, 20)), jnp.float32)
    ce = np.asarray(token_cross_entropy(logits, batch.targets)[0])
    mask = np.asarray(batch.loss_mask)
    w = np.where(np.isin(np.asarray(batch.targets), [17, 18, 19]), 3.0, 1.0) * mask
    total, stats = functional_objective([17, 18, 19], 3.0, None).loss(
        _Model(logits), None, batch, {}
    )
    np.testing.assert_allclose(float(total), (ce * w).sum(), rtol=1e-5)
    assert float(stats["functional_tokens"]) == (w > 1).sum() >= 2
    plain, _ = functional_objective([17, 18, 19], 1.0, None).loss(_Model(logits), None, batch, {})
    np.testing.assert_allclose(float(plain), (ce * mask).sum(), rtol=1e-5)


def test_plugins_register_the_agent_stage():
    from andesvl_jax.train.stages import STAGES

    c = base_config()
    c.plugins = "andesvl_jax.agent"
    assert load_plugins(c) == ["andesvl_jax.agent"]
    assert STAGES["functional"].objective == "functional"
    c.plugins = "andesvl_jax.no_such_plugin"
    with pytest.raises(PluginError, match="no_such_plugin"):
        load_plugins(c)
