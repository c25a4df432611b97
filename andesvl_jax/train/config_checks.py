"""`validate_config`: a run config checked against the schema and the registries before anything
compiles. The schema itself (`base_config`) is andesvl_jax/configs/base.py."""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from andesvl_jax.config import PRESETS
from andesvl_jax.configs import base_config, model_config

SCHEMA = "andesvl_jax/configs/base.py base_config()"


def _is_section(value) -> bool:
    return isinstance(value, (ml_collections.ConfigDict, dict))


def schema_mismatches(config, schema, prefix="") -> tuple[list[str], list[str]]:
    """(keys the schema does not have, schema keys the config lacks), dotted. A schema section
    that is empty (data.mixture, grpo.rewards, ...) takes any keys."""
    unknown, missing = [], []
    for key in config.keys():
        if key not in schema:
            unknown.append(f"{prefix}{key}")
    for key in schema.keys():
        name = f"{prefix}{key}"
        if key not in config:
            missing.append(name)
        elif _is_section(schema[key]) and len(schema[key]):
            if not _is_section(config[key]):
                unknown.append(f"{name} (a section, got {config[key]!r})")
                continue
            u, m = schema_mismatches(config[key], schema[key], name + ".")
            unknown, missing = unknown + u, missing + m
    return unknown, missing


def _check_schema(config) -> None:
    unknown, missing = schema_mismatches(config, base_config())
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; see {SCHEMA}")
    if missing:
        raise ValueError(
            f"config keys {missing} missing: start from {SCHEMA} and update its sections "
            "(c.mesh.update(...)) rather than replacing them with a dict"
        )


def _check_stage(config) -> None:
    from andesvl_jax.train.stages import STAGES

    if config.stage not in STAGES:
        raise ValueError(f"config.stage={config.stage!r} unknown; expected one of {sorted(STAGES)}")


def _check_model(config) -> None:
    if config.model.preset not in PRESETS:
        raise ValueError(
            f"config.model.preset={config.model.preset!r} unknown; expected one of {sorted(PRESETS)}"
        )
    try:
        model_config(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"config.model: {e}") from None


def _check_init(config) -> None:
    if config.init.from_pretrained and config.init.from_stage_workdir:
        raise ValueError(
            "set at most one of config.init.from_pretrained and config.init.from_stage_workdir"
        )


def _check_data(config) -> None:
    from andesvl_jax.data.formats import FORMATS
    from andesvl_jax.data.pipeline import DATA_STAGES
    from andesvl_jax.data.synthetic import TASKS

    d = config.data
    if d.stage is not None and d.stage not in DATA_STAGES:
        raise ValueError(
            f"config.data.stage={d.stage!r} unknown; expected one of {sorted(DATA_STAGES)}"
        )
    if d.sources:
        return  # data/mixture.py checks each source when it opens it
    if d.format == "synthetic":
        if unknown := sorted(set(d.mixture) - set(TASKS)):
            raise ValueError(
                f"config.data.mixture: unknown synthetic tasks {unknown}; known: {sorted(TASKS)}"
            )
    elif d.format not in FORMATS:
        raise ValueError(
            f"config.data.format={d.format!r} unknown; expected 'synthetic' or one of "
            f"{sorted(FORMATS)}"
        )
    elif not d.path:
        raise ValueError(
            f"config.data.format={d.format!r} reads a file: set config.data.path "
            "(or config.data.sources for a mixture)"
        )


def _check_positive(config) -> None:
    for key in ("steps", "log_every", "save_every", "keep_checkpoints", "max_bad_steps"):
        if config[key] <= 0:
            raise ValueError(f"config.{key} must be positive, got {config[key]}")
    if config.data.batch_size <= 0 or config.optim.accum_steps <= 0:
        raise ValueError("config.data.batch_size and config.optim.accum_steps must be positive")
    for key in ("max_tokens", "max_patches", "image_max_size"):
        if config.data[key] is not None and config.data[key] <= 0:
            raise ValueError(
                f"config.data.{key} must be positive (or unset: the stage's), got "
                f"{config.data[key]}"
            )


def _check_quant(config) -> None:
    """The qat stage's `quant` section: a known recipe, inits and a non-negative distillation."""
    if config.stage != "qat":
        return
    from andesvl_jax.compress.lsq import ACT_INITS
    from andesvl_jax.compress.qlinear import WEIGHT_INITS
    from andesvl_jax.compress.rules import get_recipe

    q = config.quant
    get_recipe(q.rules)  # RuleError (a ValueError) naming the recipes
    if q.weight_init not in WEIGHT_INITS:
        raise ValueError(
            f"config.quant.weight_init={q.weight_init!r} unknown; expected one of {sorted(WEIGHT_INITS)}"
        )
    if q.act_init not in ACT_INITS:
        raise ValueError(
            f"config.quant.act_init={q.act_init!r} unknown; expected one of {list(ACT_INITS)}"
        )
    if q.calib_batches < 1 or q.distill_weight < 0 or q.task_weight < 0:
        raise ValueError(
            "config.quant.calib_batches must be >= 1 and distill_weight, task_weight >= 0, got "
            f"{q.calib_batches}, {q.distill_weight} and {q.task_weight}"
        )
    if q.task_weight == 0 and q.distill_weight == 0:
        raise ValueError("config.quant.task_weight and distill_weight are both 0: nothing to train")


def _check_lora(config) -> None:
    """The lora / qalft stages' `lora` section: rules that build; qalft names its deployed base."""
    from andesvl_jax.train.stages import STAGES

    if config.stage not in STAGES or STAGES[config.stage].adapters is None:
        return
    from andesvl_jax.train.adapter_stage import stage_rules

    stage_rules(config)  # RuleError (a ValueError) naming the bad setting
    if STAGES[config.stage].adapters == "deployed" and not config.lora.deployed:
        raise ValueError(
            "config.lora.deployed is empty: the qalft stage trains against a deployed base "
            "(a compress.save_deployed .safetensors file)"
        )


def _check_sparse(config) -> None:
    """The sparse stage's `sparse` section: a known recipe and method, storable bits and group."""
    if config.stage != "sparse":
        return
    from andesvl_jax.compress.prune import PRUNERS, get_sparsity_recipe
    from andesvl_jax.kernels.sparse_format import SPARSE_GROUP_SIZES

    s = config.sparse
    get_sparsity_recipe(s.rules)  # ValueError naming the recipes
    if s.method not in PRUNERS:
        raise ValueError(
            f"config.sparse.method={s.method!r} unknown; expected one of {sorted(PRUNERS)}"
        )
    if s.bits not in (2, 3, 4) or s.group not in SPARSE_GROUP_SIZES:
        raise ValueError(
            f"config.sparse.bits={s.bits} / group={s.group}: the sparse format stores 2-4 bit values "
            f"with groups {SPARSE_GROUP_SIZES}"
        )
    if s.calib_batches < 1 or s.distill_weight < 0:
        raise ValueError("config.sparse.calib_batches must be >= 1 and distill_weight >= 0")


# In order: the schema first, so the later checks can read every field.
CHECKS: tuple[Callable[[ml_collections.ConfigDict], None], ...] = (
    _check_schema,
    _check_stage,
    _check_model,
    _check_init,
    _check_data,
    _check_positive,
    _check_quant,
    _check_sparse,
    _check_lora,
)


def validate_config(config, *, reads_data: bool = True) -> None:
    """Clear errors for what would otherwise fail deep inside a compile (ValueError).

    reads_data=False (compile-check: the step is compiled for abstract batches) skips the checks of
    the data source, which is never opened. The config's plugins (train/plugins.py) are imported
    first: they register the stages, objectives and tasks the checks look up."""
    from andesvl_jax.train.plugins import load_plugins

    load_plugins(config)
    for check in CHECKS:
        if reads_data or check is not _check_data:
            check(config)
