"""The run config's schema: `base_config()`, every field a training config may set, and defaults.

Every `experiments/*.py` starts from `base_config()` and sets what its experiment changes; the
library reads the same schema back when it validates a config (train/config_checks.py) and when it
rebuilds a model from a run's saved config (`model_config`). It lives in the library, not in
`experiments/` (which is not an installed package), so the library never imports an experiment.

Unset is `None` (an ml_collections `placeholder(type)`: typed, so `--config.init.from_pretrained=/x`
or `--config.data.max_tokens=4096` still parse and type-check), never `0` or `""`; the comment on a
field says what unset means. `model` holds the preset name and every `AndesVLConfig` field, nested
as the dataclasses are (`model.vision.use_rope2d`, `model.text.num_layers`, `model.scan_layers`),
each unset by default = the preset's value; `model_config` applies the ones a run sets.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from ml_collections.config_dict import placeholder

from andesvl_jax.config import AndesVLConfig, get_preset

ConfigDict = ml_collections.ConfigDict


def _fields_schema(cls) -> ConfigDict:
    """One unset, typed entry per field of the config dataclass `cls`; nested dataclasses nest."""
    out = ConfigDict()
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            out[f.name] = _fields_schema(type(default))
        else:
            out[f.name] = placeholder(type(default))
    return out


def model_schema() -> ConfigDict:
    """`model`: the preset name plus every AndesVLConfig field (unset = the preset's value)."""
    out = _fields_schema(AndesVLConfig)
    out.preset = "tiny"
    return out


def _set_fields(section) -> dict:
    """The entries of a `model` (sub)section that a run set: nested dicts, None entries dropped."""
    out = {}
    for key, value in section.items():
        if isinstance(value, (ConfigDict, dict)):
            value = _set_fields(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def model_overrides(config) -> dict:
    """The AndesVLConfig fields the run config sets, as `get_preset` overrides (nested dicts).

    Run configs saved before the model fields were part of the schema kept them in
    `model.overrides` (flat); those are applied first.
    """
    model = dict(config.model)
    legacy = dict(model.pop("overrides", None) or {})
    model.pop("preset", None)
    return {**legacy, **_set_fields(model)}


def model_config(config) -> AndesVLConfig:
    """The model a run config describes: its preset with the fields it sets."""
    return get_preset(config.model.preset, **model_overrides(config))


def base_config() -> ConfigDict:
    """Every field a training config may set, with defaults. Experiments start from this."""
    c = ConfigDict()
    c.stage = "sft"  # a train/stages.py STAGES key
    c.steps = 100
    c.seed = 0
    c.model = model_schema()
    # at most one; both unset = random initialisation
    c.init = ConfigDict(
        {"from_pretrained": placeholder(str), "from_stage_workdir": placeholder(str)}
    )
    # dcn_data > 1: multi-slice, data parallel across that many slices (andesvl_jax/sharding.py make_mesh)
    c.mesh = ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "dcn_data": 1})
    # unset = sharding.DEFAULT_RULES; else ((logical, mesh axis or None), ...)
    c.rules = placeholder(tuple)
    c.data = ConfigDict(
        {
            "format": "synthetic",  # or a data/formats FORMATS key, which needs `path`
            "path": placeholder(str),
            "image_root": placeholder(str),  # unset = the data file's folder
            "tokenizer": placeholder(str),  # a tokenizer.json; unset = the embedded one
            "stage": placeholder(str),  # a data/pipeline.py DATA_STAGES key; unset = the stage's own
            "mixture": ConfigDict(),  # synthetic: task -> weight
            # real datasets mixed by weight: name -> {format, path, image_root, weight} (data/mixture.py)
            "sources": ConfigDict(),
            "size": 100_000,
            "min_side": 56,
            "max_side": 112,
            # (min, max) prompt characters of the long-context lc_* tasks; unset = TaskContext's
            "long_context": placeholder(tuple),
            "batch_size": 8,
            # per packed row; unset = the data stage's default (data/pipeline.py DATA_STAGES)
            "max_tokens": placeholder(int),
            "max_patches": placeholder(int),
            "image_max_size": placeholder(int),
            "on_error": "raise",
            "worker_count": 0,  # prefetch processes; 0 = in the training process
        }
    )
    c.optim = ConfigDict(
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
            # sequence positions per LM-head/loss chunk (train/chunked_loss.py): at most
            # [rows, loss_chunk, vocab] logits at once; 0 = the full logits
            "loss_chunk": 2048,
            # "quant": the QAT step sizes and zero points (compress.QuantScale), whatever module
            "lr_multipliers": ConfigDict(
                {"vision": 1.0, "projector": 1.0, "llm": 1.0, "quant": 1.0}
            ),
        }
    )
    # MPO (stage mpo), InternVL's defaults: DESIGN.md section 6
    c.mpo = ConfigDict({"dpo_weight": 0.8, "bco_weight": 0.2, "sft_weight": 1.0, "beta": 0.1})
    # GRPO (stage grpo): loss (GRPOConfig) and rollouts (train/rollouts.py)
    c.grpo = ConfigDict(
        {
            "epsilon": 0.2,
            "epsilon_high": placeholder(float),  # upper clip offset; unset = epsilon (symmetric)
            "beta": 0.04,
            "group_size": 8,
            "aggregation": "token",
            "prompts_per_rollout": 8,
            "updates_per_rollout": 2,
            "max_new_tokens": 64,
            "temperature": 1.0,
            "top_p": 1.0,
            "rewards": ConfigDict(),  # name -> weight (train/rewards.py); empty = exact_answer
            "template": "thinking",  # 'thinking' (think / no-think per prompt) or 'instruct'
            "thinking_fraction": 0.5,  # template 'thinking': share of prompts asked to think
            # "task,task;task" = multimodal then text-only phases; unset = one phase
            "phases": placeholder(str),
            "curriculum": "difficulty",  # easy -> hard by meta difficulty ('' = off)
            # rollout engine: a mesh over this host's devices (all unset = sample where the policy
            # is; else an unset axis is 1, one may be -1), and its weights' dtype (unset = training's)
            "generation_mesh": ConfigDict({a: placeholder(int) for a in ("data", "fsdp", "tensor")}),
            "generation_dtype": placeholder(str),
        }
    )
    # QAT (stage qat, andesvl_jax/compress): rules = a compress.rules.RECIPES name
    c.quant = ConfigDict(
        {
            "rules": "w4a16_g32",
            "weight_init": "absmax",  # absmax | mse
            "act_init": "absmax",  # absmax | mse | lsq (static activation steps, from data)
            "calib_batches": 2,  # training batches run to calibrate activation steps
            # the bit-exact grouped product (holds [tokens, K/group, N]); False = one dense matmul
            "exact": False,
            "distill_weight": 0.0,  # KL(float teacher || student) on answer tokens, per token
            "task_weight": 1.0,  # the next-token loss's weight (0 = pure distillation; needs KL)
        }
    )
    # LoRA / QALFT (stages lora, qalft; compress/lora.py): targets are compress.lora.TARGETS names
    # or regular expressions over per-layer paths, comma-separated
    c.lora = ConfigDict(
        {
            "targets": "llm",
            "rank": 8,
            "alpha": 16.0,
            "dropout": 0.0,
            "branch": "float",  # float | float16 | int8 (the device's LoRA precision)
            "deployed": "",  # qalft: the deployed base (compress.save_deployed .safetensors)
        }
    )
    # EAGLE / HASS draft heads (stages eagle, hass; train/eagle.py): unset = the stage's recipe
    c.draft = ConfigDict(
        {
            "steps": placeholder(int),  # unrolled draft steps (HASS: 3)
            "ce_weight": placeholder(float),  # CE vs the target's distribution (0.1)
            "topk": placeholder(int),  # HASS top-K distillation (10)
            "topk_weight": placeholder(float),  # (HASS: 1.0, EAGLE: 0)
            "noise": placeholder(float),  # uniform feature noise amplitude (0.2)
            "decay": placeholder(float),  # step s weighs decay^(s-1) (1.0; EAGLE-3: 0.8)
            "answer_only": placeholder(bool),  # loss on answer tokens only (False: all positions)
            "draft_vocab": 0,  # reduced draft vocabulary (not trainable yet: 0)
            # a deployed integer model (compress.save_deployed .safetensors) as the frozen target
            # instead of the float starting model: the head learns the features it will draft for
            "deployed": "",
        }
    )
    # sparse stage (andesvl_jax/compress/prune.py): rules = a SPARSITY_RECIPES name
    c.sparse = ConfigDict(
        {
            "rules": "1:4",
            "method": "magnitude",  # magnitude | wanda | sparsegpt
            "bits": 4,  # LSQ bits of the kept values
            "group": 64,  # step-size group along K (the packed format: 64 or 128)
            "calib_batches": 2,  # training batches run for Wanda / SparseGPT statistics
            "distill_weight": 1.0,  # KL(dense teacher || student) on answer tokens, per token
        }
    )
    # modules imported before the stage is looked up (train/plugins.py), comma-separated: a package
    # above train/ (e.g. "andesvl_jax.agent") registers its stages, objectives, tasks and rewards
    c.plugins = placeholder(str)
    # the functional-token agent's settings (andesvl_jax/agent, loaded as a plugin): any keys
    c.agent = ConfigDict()
    c.log_every = 10
    c.save_every = 100
    c.keep_checkpoints = 3
    c.async_checkpoints = True
    c.max_bad_steps = 5
    c.tensorboard = True
    c.progress = True
    c.peak_flops = placeholder(float)  # device peak FLOP/s for the MFU estimate; unset = no MFU
    return c
