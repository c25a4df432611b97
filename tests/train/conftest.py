"""Tiny training configs shared by the training tests."""

import pytest

from andesvl_jax.configs import base_config


def tiny_config(**overrides):
    c = base_config()
    c.stage = "sft"
    c.steps = 3
    c.model.preset = "tiny"
    c.data.stage = "demo"
    c.data.mixture = {"count": 1.0, "colour": 1.0, "ocr_digits": 1.0}
    c.data.batch_size = 8
    c.data.max_tokens = 128
    c.data.max_patches = 128
    c.data.image_max_size = 84
    c.data.max_side = 84
    c.optim.warmup_steps = 1
    c.log_every = 1
    c.save_every = 2
    c.tensorboard = False
    c.progress = False
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


@pytest.fixture(scope="session")
def make_config():
    return tiny_config
