"""Functional tokens for on-device agents (Octopus v2/v3): function registry, vocabulary growth,
the synthetic multimodal agent corpus, constrained decoding and parsing, the `functional` training
stage, a reward model and GRPO with execution feedback. docs/agent.md.

As a training plugin (`config.plugins = "andesvl_jax.agent"`, train/plugins.py) importing this
package registers the agent's stages, objectives, synthetic tasks and rewards into the registries
of train/ and data/, which may not import agent/ themselves.
"""

from andesvl_jax.agent import corpus as _corpus  # noqa: F401  (registers the agent_* tasks)
from andesvl_jax.agent import jsonl as _jsonl  # noqa: F401  (registers the agent_jsonl format)
from andesvl_jax.agent import rewards as _rewards  # noqa: F401  (registers the agent rewards)
from andesvl_jax.agent.stage import register as _register_stages

_register_stages()


def configure(config) -> None:
    """Plugin hook (train/plugins.py): the GRPO rewards read their reward model from the config."""
    _rewards.configure(config)
