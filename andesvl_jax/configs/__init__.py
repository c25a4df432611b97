"""Run configs: the schema experiments start from (`base_config`), how a run config names its
model (`model_config`), and the `experiments/FILE.py:ARG` argument parser (`parse_config_arg`)."""

from andesvl_jax.configs.args import Arg, ConfigArgError, describe_args, parse_config_arg
from andesvl_jax.configs.base import base_config, model_config, model_overrides, model_schema

__all__ = [
    "Arg",
    "ConfigArgError",
    "base_config",
    "describe_args",
    "model_config",
    "model_overrides",
    "model_schema",
    "parse_config_arg",
]
