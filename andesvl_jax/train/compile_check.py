"""Ahead-of-time fit check: lower and compile the real train step for abstract inputs on a mesh.

Nothing is allocated: the model, the optimizer state, the objective's extra state (e.g. MPO's
reference policy) and the batch are `jax.ShapeDtypeStruct`s carrying their shardings, so the 4B
model at 32 768 tokens compiles on a laptop's virtual CPU devices. XLA's memory analysis of the
partitioned program then gives per-device bytes (arguments, outputs, temporaries), and its cost
analysis the FLOPs per step, as MaxText's `train_compile` does for a TPU topology.

The CPU compiler's buffer assignment is not a GPU's or a TPU's (it may upcast bf16 elementwise
work to f32 and fuses differently), so the temporaries are an estimate of the accelerator's; the
parameter and optimizer bytes are exact (they follow from the shardings).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from andesvl_jax.compress.prune import sparse_structure
from andesvl_jax.compress.qlinear import quantize_model
from andesvl_jax.configs import model_config
from andesvl_jax.data.batch import TrainBatch
from andesvl_jax.data.patches import PackedImages
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.sharding import DEFAULT_RULES, make_mesh, state_shardings
from andesvl_jax.train.config_checks import validate_config
from andesvl_jax.train.eagle import RECIPES as DRAFT_RECIPES
from andesvl_jax.train.eagle import trainee
from andesvl_jax.train.objectives import OBJECTIVES
from andesvl_jax.train.optim import make_optimizer
from andesvl_jax.train.rollouts import RolloutBatch
from andesvl_jax.train.stages import get_stage, is_trainable
from andesvl_jax.train.step_shape import StepShape, step_shape
from andesvl_jax.train.telemetry import train_flops
from andesvl_jax.train.trainer import TrainState, batch_shardings, jit_train_step, make_train_step

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class FitReport:
    """Per-device memory of one compiled train step (bytes) and its cost."""

    config: str
    mesh: dict[str, int]
    rows: int
    tokens: int
    patches: int
    params: int  # trainable + frozen parameters on one device
    optimizer: int  # optimizer moments + counters on one device
    extra: int  # the objective's state (reference policy, ...) on one device
    batch: int
    temp: int  # XLA temporaries: activations kept for the backward + workspace
    output: int
    alias: int  # outputs written in place of donated arguments
    peak: int  # arguments + temporaries + outputs not aliased onto arguments
    flops: float  # model FLOPs per device per step (train_flops: 6·N·tokens + attention)
    compile_s: float
    hbm: int

    @property
    def fits(self) -> bool:
        return self.peak <= self.hbm

    def row(self) -> dict:
        g = lambda b: round(b / GIB, 2)  # noqa: E731
        return {
            "config": self.config,
            "mesh": "x".join(f"{k}{v}" for k, v in self.mesh.items() if v > 1) or "1",
            "rows": self.rows,
            "tokens": self.tokens,
            "patches": self.patches,
            "params_gib": g(self.params),
            "optimizer_gib": g(self.optimizer),
            "extra_gib": g(self.extra),
            "temp_gib": g(self.temp),
            "peak_gib": g(self.peak),
            "hbm_gib": g(self.hbm),
            "fits": self.fits,
            "tflops_per_device": round(self.flops / 1e12, 1),
            "compile_s": round(self.compile_s, 1),
        }


def _sds(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=sharding)


def abstract_batch(model_cfg, shape: StepShape, objective: str, mesh: Mesh):
    """The step's batch as sharded ShapeDtypeStructs at the stage's real lengths."""
    rows, tokens, patches = shape
    patch_dim = 3 * model_cfg.vision.patch_size**2
    i32, f32 = np.int32, np.float32
    text = {n: (rows, tokens) for n in ("input_ids", "segment_ids", "positions", "targets")}
    fields = {n: _sds(s, i32, None) for n, s in text.items()}
    fields["loss_mask"] = _sds((rows, tokens), f32, None)
    images = PackedImages(
        patches=_sds((rows, patches, patch_dim), f32, None),
        **{n: _sds((rows, patches), i32, None) for n in PackedImages._fields[1:]},
    )
    if objective == "grpo":
        batch = RolloutBatch(
            **fields,
            images=images,
            old_logprobs=_sds((rows, tokens), f32, None),
            advantages=_sds((rows,), f32, None),
            rewards=_sds((rows,), f32, None),
        )
    else:
        batch = TrainBatch(**fields, images=images)
    shardings = batch_shardings(batch, mesh)
    return jax.tree.map(lambda a, s: _sds(a.shape, a.dtype, s), batch, shardings)


def _with_shardings(state: nnx.State, mesh: Mesh, rules) -> nnx.State:
    shardings = state_shardings(state, mesh, rules)
    return jax.tree.map(
        lambda v, s: v.replace(_sds(v.shape, v.dtype, s)),
        state,
        shardings,
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def _mirror(tree, params, replicated: NamedSharding):
    """Shardings for a tree whose leaves mirror parameters (moments, a reference copy) by path
    suffix; anything else (counters, scalars) replicated."""
    by_path = {
        tuple(map(str, path)): leaf.sharding
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }

    def pick(path, leaf):
        keys = tuple(map(str, path))
        sharding = next(
            (by_path[keys[i:]] for i in range(len(keys)) if keys[i:] in by_path), replicated
        )
        return _sds(leaf.shape, leaf.dtype, sharding)

    return jax.tree_util.tree_map_with_path(pick, tree)


def abstract_train_state(config, model_cfg, mesh: Mesh, rules, stage, objective):
    """(graphdef, TrainState of sharded ShapeDtypeStructs, optimizer), as `initial_state` builds."""

    def build():
        model = AndesVL(model_cfg, rngs=nnx.Rngs(0))
        if stage.objective == "qat":  # the QAT structure (step sizes), as `quantized_params` builds
            quantize_model(model, config.quant.rules, exact=config.quant.exact)
        if stage.objective in DRAFT_RECIPES:  # eagle / hass: the draft head on the target
            model = trainee(model, config.get("draft"), 0)
        if stage.objective == "sparse":  # the sparse structure (masks), as `sparse_params` builds
            s = config.sparse
            model = sparse_structure(s.bits, s.group)(model)
        return model

    model = nnx.eval_shape(build)
    graphdef, params, frozen = nnx.split(model, is_trainable(stage), ...)
    params, frozen = _with_shardings(params, mesh, rules), _with_shardings(frozen, mesh, rules)
    optimizer = make_optimizer(config.optim, config.steps)
    replicated = NamedSharding(mesh, PartitionSpec())
    scalar = _sds((), np.int32, replicated)
    state = TrainState(
        step=scalar,
        params=params,
        frozen=frozen,
        opt_state=_mirror(jax.eval_shape(optimizer.init, params), params, replicated),
        rng=_sds((2,), np.uint32, replicated),
        bad_steps=scalar,
        skipped_steps=scalar,
        extra=_mirror(jax.eval_shape(objective.init_extra, params), params, replicated),
    )
    return graphdef, state, optimizer


def _device_bytes(tree) -> int:
    """Bytes of one device's shards of every array in `tree`."""
    leaves = jax.tree.leaves(tree)
    return sum(
        math.prod(a.sharding.shard_shape(a.shape)) * jnp.dtype(a.dtype).itemsize for a in leaves
    )


@dataclasses.dataclass(frozen=True)
class LoweredStep:
    """The train step lowered for a config's abstract, sharded state and batch (not compiled)."""

    lowered: jax.stages.Lowered
    state: TrainState
    batch: object
    mesh: Mesh
    shape: StepShape
    model_cfg: object


def lower_train_step(config, devices=None) -> LoweredStep:
    """Validate `config` (without opening its data), check the step's shape against the mesh and
    the model, and lower the real train step for abstract inputs: every config error and every
    shape or sharding mismatch of the traced step surfaces here, in seconds, before a compile."""
    validate_config(config, reads_data=False)
    stage = get_stage(config.stage)
    mesh = make_mesh(dict(config.mesh), devices)
    rules = tuple(tuple(r) for r in config.rules) if config.rules else DEFAULT_RULES
    model_cfg = model_config(config)
    shape = step_shape(config, model_cfg, stage, mesh)
    objective = OBJECTIVES[stage.objective](config)
    graphdef, state, optimizer = abstract_train_state(
        config, model_cfg, mesh, rules, stage, objective
    )
    batch = abstract_batch(model_cfg, shape, stage.objective, mesh)
    step = make_train_step(
        graphdef,
        optimizer,
        accum_steps=config.optim.accum_steps,
        objective=objective,
        mesh=mesh,
        rules=rules,
    )
    state_sh = jax.tree.map(lambda a: a.sharding, state)
    batch_sh = jax.tree.map(lambda a: a.sharding, batch)
    lowered = jit_train_step(step, state_sh, batch_sh).lower(state, batch)
    return LoweredStep(lowered, state, batch, mesh, shape, model_cfg)


def compile_check(config, name: str = "", *, hbm_gib: float = 80.0, devices=None) -> FitReport:
    """Compile `config`'s train step on its mesh (abstract inputs) and report per-device memory."""
    step = lower_train_step(config, devices)
    start = time.perf_counter()
    compiled = step.lowered.compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    rows, tokens, patches = step.shape
    # XLA's cost analysis counts a while-loop body once (the scanned layers, remat), so the
    # FLOPs are the model's, as the MFU column of the training log counts them.
    flops = train_flops(step.model_cfg, rows * tokens, rows * patches, tokens, patches)
    arguments = memory.argument_size_in_bytes
    peak = arguments + memory.temp_size_in_bytes + memory.output_size_in_bytes
    peak -= memory.alias_size_in_bytes
    state = step.state
    return FitReport(
        config=name or f"{config.model.preset}/{config.stage}",
        mesh={k: int(v) for k, v in step.mesh.shape.items()},
        rows=rows,
        tokens=tokens,
        patches=patches,
        params=_device_bytes((state.params, state.frozen)),
        optimizer=_device_bytes(state.opt_state),
        extra=_device_bytes(state.extra),
        batch=_device_bytes(step.batch),
        temp=memory.temp_size_in_bytes,
        output=memory.output_size_in_bytes,
        alias=memory.alias_size_in_bytes,
        peak=peak,
        flops=flops / step.mesh.size,
        compile_s=compile_s,
        hbm=int(hbm_gib * GIB),
    )


def shortfall(report: FitReport) -> str:
    """What does not fit, and by how much (empty when it fits)."""
    if report.fits:
        return ""
    parts = {
        "parameters": report.params,
        "optimizer": report.optimizer,
        "objective state": report.extra,
        "batch": report.batch,
        "temporaries": report.temp,
        "outputs not in place": report.output - report.alias,
    }
    detail = ", ".join(f"{k} {v / GIB:.2f}" for k, v in parts.items() if v)
    return (
        f"{report.config} needs {report.peak / GIB:.2f} GiB per device, "
        f"{(report.peak - report.hbm) / GIB:.2f} GiB over the {report.hbm / GIB:.0f} GiB HBM "
        f"({detail} GiB)"
    )
