"""The global shape of one train step, checked before anything compiles.

Rows must split over the mesh's data x fsdp axes and the accumulation steps; a row's tokens must be
within the model's positions. The training loop and compile-check read the same numbers here.
"""

from __future__ import annotations

from typing import NamedTuple

from jax.sharding import Mesh

from andesvl_jax.data.pipeline import DataConfig


class StepShape(NamedTuple):
    rows: int  # global batch rows of one step (GRPO: one rollout round)
    tokens: int  # per row
    patches: int  # per row


def step_shape(config, model_cfg, stage, mesh: Mesh) -> StepShape:
    """The step's rows / tokens / patches; ValueError naming the config field that does not fit."""
    if stage.objective == "grpo":  # a batch is one rollout round, laid out by the rollouts
        from andesvl_jax.train.rollouts import RolloutSpec

        spec = RolloutSpec.from_config(config)
        rows = config.grpo.prompts_per_rollout * config.grpo.group_size
        name = f"grpo.prompts_per_rollout x group_size={rows}"
        tokens, patches = spec.max_tokens, spec.max_patches
    else:
        d = config.data
        rows, name = d.batch_size, f"data.batch_size={d.batch_size}"
        spec = DataConfig.for_model(
            model_cfg,
            stage=d.stage or stage.data_stage,
            max_tokens=d.max_tokens,
            max_patches=d.max_patches,
        ).encode_spec()
        tokens, patches = spec.max_tokens, spec.max_patches
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    if rows % (dp * config.optim.accum_steps):
        raise ValueError(
            f"{name} must divide by data*fsdp={dp} times optim.accum_steps={config.optim.accum_steps}"
        )
    if tokens > model_cfg.text.max_position:
        raise ValueError(
            f"{tokens} tokens per row (data.max_tokens or the stage's) exceed the model's maximum "
            f"position {model_cfg.text.max_position} (model.text.max_position)"
        )
    return StepShape(rows, tokens, patches)
