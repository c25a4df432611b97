"""Embedded synthetic corpus (procedural, deterministic, verifiable by construction)."""

from andesvl_jax.data.synthetic.corpus import MIXTURES, SPLITS, SyntheticSource
from andesvl_jax.data.synthetic.registry import TASKS, TaskContext, register_task

__all__ = ["MIXTURES", "SPLITS", "TASKS", "SyntheticSource", "TaskContext", "register_task"]
