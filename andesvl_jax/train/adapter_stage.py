"""The lora and qalft stages' model: LoRA adapters (compress/lora.py) on the float starting model
(lora) or on the deployed integer base read from `config.lora.deployed` (qalft), and the trained
adapter written as a PEFT directory at the end of the run (compress/lora_files.py).

QALFT trains against exactly what the device runs: the base's integer codes, fp16 weight steps and
static activation steps are `compress.deploy.Deployed` variables — frozen by the stage filter and
never written back, so the deployed file is untouched and any number of scenario LoRAs are trained
against one base without re-quantizing it.
"""

from __future__ import annotations

import pathlib

import jax
from flax import nnx

from andesvl_jax.compress.deployed_io import load_deployed
from andesvl_jax.compress.lora import apply_lora, lora_rules
from andesvl_jax.compress.lora_files import save_adapter
from andesvl_jax.sharding import state_shardings

ADAPTER_DIR = "adapter"


def stage_rules(config):
    """The LoRA rules of `config.lora` (targets comma-separated)."""
    c = config.lora
    targets = [t.strip() for t in str(c.targets).split(",") if t.strip()]
    return lora_rules(
        targets, rank=int(c.rank), alpha=float(c.alpha), dropout=float(c.dropout), branch=c.branch
    )


def deployed_base(path, model_cfg):
    """The deployed model at `path` (qalft's base, a draft head's target), checked against the
    run's model config."""
    path = pathlib.Path(path)
    model = load_deployed(path, dtype=model_cfg.dtype)
    mine, theirs = model_cfg.replace(scan_layers=False), model.cfg
    if mine.text != theirs.text or mine.vision != theirs.vision:
        raise ValueError(
            f"{path}: the deployed base is a different model than config.model describes "
            f"(text {theirs.text} vs {mine.text}); train with the base's preset"
        )
    return model


def adapter_params(config, model_cfg, stage, graphdef, full, mesh, rules):
    """(graphdef, full State) of the adapter stage's model, sharded by `rules`."""
    if stage.adapters == "deployed":
        model = deployed_base(config.lora.deployed, model_cfg)
    else:
        model = nnx.merge(graphdef, full)
    apply_lora(model, stage_rules(config), seed=config.seed, training=True)
    graphdef, state = nnx.split(model)
    return graphdef, jax.device_put(state, state_shardings(state, mesh, rules))


def write_adapter(graphdef, state, workdir) -> pathlib.Path:
    """The trained adapter of a TrainState as a PEFT directory `workdir/adapter`."""
    model = nnx.merge(graphdef, jax.device_get(state.params), jax.device_get(state.frozen))
    return save_adapter(model, pathlib.Path(workdir) / ADAPTER_DIR)
