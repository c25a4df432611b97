"""The run config's schema (`base_config`) and its validation before anything compiles."""

from __future__ import annotations

import ml_collections

from andesvl_jax.config import PRESETS


def base_config() -> ml_collections.ConfigDict:
    """Every field a training config may set, with defaults. Experiments start from this."""
    c = ml_collections.ConfigDict()
    c.stage = "sft"
    c.steps = 100
    c.seed = 0
    c.model = ml_collections.ConfigDict(
        {"preset": "tiny", "overrides": ml_collections.ConfigDict()}
    )
    c.init = ml_collections.ConfigDict({"from_pretrained": "", "from_stage_workdir": ""})
    # dcn_data > 1: multi-slice, data parallel across that many slices (andesvl_jax/sharding.py make_mesh)
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "dcn_data": 1})
    c.rules = ()  # empty = train.sharding.DEFAULT_RULES; else ((logical, mesh axis or None), ...)
    c.data = ml_collections.ConfigDict(
        {
            "format": "synthetic",
            "path": "",
            "image_root": "",
            "tokenizer": "",
            "stage": "",
            "mixture": ml_collections.ConfigDict(),  # synthetic: task -> weight
            # real datasets mixed by weight: name -> {format, path, image_root, weight} (data/mixture.py)
            "sources": ml_collections.ConfigDict(),
            "size": 100_000,
            "min_side": 56,
            "max_side": 112,
            "batch_size": 8,
            "max_tokens": 0,
            "max_patches": 0,
            "image_max_size": 0,
            "on_error": "raise",
            "worker_count": 0,
        }
    )
    c.optim = ml_collections.ConfigDict(
        {
            "lr": 1e-3,
            "schedule": "cosine",
            "warmup_steps": 10,
            "end_lr_factor": 0.1,
            "b1": 0.9,
            "b2": 0.95,
            "eps": 1e-8,
            "weight_decay": 0.05,
            "clip_norm": 1.0,
            "accum_steps": 1,
            "z_loss": 0.0,
            "lr_multipliers": ml_collections.ConfigDict(
                {"vision": 1.0, "projector": 1.0, "llm": 1.0}
            ),
        }
    )
    # MPO (stage mpo), InternVL's defaults: DESIGN.md section 6
    c.mpo = ml_collections.ConfigDict(
        {"dpo_weight": 0.8, "bco_weight": 0.2, "sft_weight": 1.0, "beta": 0.1}
    )
    # GRPO (stage grpo): loss (GRPOConfig) and rollouts (train/rollouts.py)
    c.grpo = ml_collections.ConfigDict(
        {
            "epsilon": 0.2,
            "epsilon_high": 0.0,  # 0 = epsilon (symmetric)
            "beta": 0.04,
            "group_size": 8,
            "aggregation": "token",
            "prompts_per_rollout": 8,
            "updates_per_rollout": 2,
            "max_new_tokens": 64,
            "temperature": 1.0,
            "top_p": 1.0,
            "rewards": ml_collections.ConfigDict(),  # name -> weight (train/rewards.py); empty = exact_answer
            "template": "thinking",  # 'thinking' (think / no-think per prompt) or 'instruct'
            "thinking_fraction": 0.5,  # template 'thinking': share of prompts asked to think
            "phases": "",  # "task,task;task" = multimodal then text-only phases (empty: one phase)
            "curriculum": "difficulty",  # easy -> hard by meta difficulty ('' = off)
        }
    )
    c.log_every = 10
    c.save_every = 100
    c.keep_checkpoints = 3
    c.async_checkpoints = True
    c.max_bad_steps = 5
    c.tensorboard = True
    c.progress = True
    c.peak_flops = 0.0  # device peak FLOP/s for the MFU estimate; 0 = do not report MFU
    return c


def _unknown(config, schema, prefix="") -> list[str]:
    out = []
    for key in config.keys():
        name = f"{prefix}{key}"
        if key not in schema:
            out.append(name)
        elif (
            isinstance(schema[key], ml_collections.ConfigDict)
            and len(schema[key])
            and isinstance(config[key], ml_collections.ConfigDict)
        ):
            out += _unknown(config[key], schema[key], name + ".")
    return out


def validate_config(config) -> None:
    """Clear errors for what would otherwise fail deep inside a compile."""
    from andesvl_jax.train.stages import STAGES

    unknown = _unknown(config, base_config())
    if unknown:
        raise ValueError(
            f"unknown config keys {unknown}; see andesvl_jax/train/config_checks.py base_config()"
        )
    if config.stage not in STAGES:
        raise ValueError(f"config.stage={config.stage!r} unknown; expected one of {sorted(STAGES)}")
    if config.model.preset not in PRESETS:
        raise ValueError(
            f"config.model.preset={config.model.preset!r} unknown; expected one of {sorted(PRESETS)}"
        )
    if config.init.from_pretrained and config.init.from_stage_workdir:
        raise ValueError(
            "set at most one of config.init.from_pretrained and config.init.from_stage_workdir"
        )
    for key in ("steps", "log_every", "save_every", "keep_checkpoints", "max_bad_steps"):
        if config[key] <= 0:
            raise ValueError(f"config.{key} must be positive, got {config[key]}")
    if config.data.batch_size <= 0 or config.optim.accum_steps <= 0:
        raise ValueError("config.data.batch_size and config.optim.accum_steps must be positive")
