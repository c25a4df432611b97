"""`train(config, workdir)`: one stage of one run, from an ml_collections config (see experiments/).

mesh -> model (random, imported weights, or the previous stage's checkpoint) split into trainable /
frozen -> optimizer -> data iterator -> resume from the latest checkpoint if any -> jitted step loop
with logging, periodic async checkpoints, SIGTERM save, and the non-finite guard.

The step loop never waits on the device between sync steps (log, save, last, SIGTERM): metrics and
the guard's counters stay on device and are fetched in one transfer at the next sync step, and the
token/patch counts come from the host batch, so dispatch runs ahead of the device.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from andesvl_jax.compress.calibrate import calibrate_activations
from andesvl_jax.compress.prune import prune_model, sparse_structure
from andesvl_jax.compress.qlinear import needs_calibration, quantize_model
from andesvl_jax.convert.workdir import (
    RUN_CONFIG,
    model_config,
    restore_model_params,
    run_tokenizer,
)
from andesvl_jax.data import DataConfig, make_dataset, open_dataset, pipeline_stats
from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.data.batch import TrainBatch, packing_efficiency
from andesvl_jax.data.mixture import open_mixture
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.sharding import DEFAULT_RULES, make_mesh, state_shardings
from andesvl_jax.train.adapter_stage import adapter_params, write_adapter
from andesvl_jax.train.checkpoint import Checkpointer
from andesvl_jax.train.config_checks import validate_config
from andesvl_jax.train.eagle import RECIPES as DRAFT_RECIPES
from andesvl_jax.train.eagle import trainee_state
from andesvl_jax.train.objectives import OBJECTIVES
from andesvl_jax.train.optim import make_optimizer
from andesvl_jax.train.stages import get_stage, is_trainable
from andesvl_jax.train.step_shape import step_shape
from andesvl_jax.train.telemetry import MetricsWriter, Progress, train_flops
from andesvl_jax.train.trainer import TrainState, batch_shardings, jit_train_step, make_train_step


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite steps; the last good checkpoint is kept."""


def initial_params(config, model_cfg, mesh, rules):
    """Full parameter State, sharded: from imported weights, a previous stage, or random."""
    abstract = nnx.eval_shape(lambda: AndesVL(model_cfg, rngs=nnx.Rngs(config.seed)))
    graphdef, abs_state = nnx.split(abstract)
    shardings = state_shardings(abs_state, mesh, rules)
    if config.init.from_pretrained:
        from andesvl_jax.convert.loader import load_checkpoint

        execution = {
            k: getattr(model_cfg, k)
            for k in ("scan_layers", "remat", "param_dtype", "dtype", "attention_impl")
        }
        model, _ = load_checkpoint(
            config.init.from_pretrained, overrides=execution, mesh=mesh, rules=rules
        )
        return graphdef, nnx.state(model)
    if config.init.from_stage_workdir:
        like = jax.tree.map(
            lambda v, s: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)),
            abs_state,
            shardings,
            is_leaf=lambda x: isinstance(x, nnx.Variable),
        )
        return graphdef, restore_model_params(config.init.from_stage_workdir, like)
    create = jax.jit(
        lambda: nnx.state(AndesVL(model_cfg, rngs=nnx.Rngs(config.seed))), out_shardings=shardings
    )
    return graphdef, create()


def quantized_params(config, model_cfg, graphdef, full, mesh, rules):
    """The QAT stage's model: `config.quant.rules` applied to the starting (float) model, weight
    steps from its kernels, static activation steps from `quant.calib_batches` training batches
    (compress/). -> (graphdef, full State), sharded by the same logical rules."""
    q = config.quant
    # On one device: calibration records inputs with ordered callbacks, which jax runs on a single
    # device only (so the model must fit one device of this host; sharded calibration is future
    # work, as is calibration in a multi-process run).
    local = jax.device_put(full, jax.local_devices()[0])
    model = quantize_model(
        nnx.merge(graphdef, local), q.rules, weight_init=q.weight_init, exact=q.exact
    )
    if needs_calibration(model):
        calibrate_activations(
            model,
            calibration_run(calibration_batches(config, model_cfg, q.calib_batches)),
            q.act_init,
        )
    graphdef, state = nnx.split(model)
    return graphdef, jax.device_put(state, state_shardings(state, mesh, rules))


def calibration_batches(config, model_cfg, count: int) -> list[TrainBatch]:
    """The first `count` training batches of the run `config` (its stage's data policy), read in
    this process: the calibration data of QAT's activation steps and of PTQ."""
    data_stage = config.data.stage or get_stage(config.stage).data_stage
    local_batch = config.data.batch_size // jax.process_count()
    in_process = config.copy_and_resolve_references()
    in_process.data.worker_count = 0  # a few batches: no prefetch processes to start
    batches = iter(training_data(in_process, model_cfg, data_stage, local_batch))
    return [next(batches) for _ in range(max(int(count), 1))]


def calibration_run(batches: list[TrainBatch]):
    """model -> None: the forwards of `batches` (what compress's calibration observes)."""

    def run(m):
        for b in batches:
            m(b.input_ids, b.images, positions=b.positions, segment_ids=b.segment_ids)

    return run


def sparse_params(config, model_cfg, graphdef, full, mesh, rules):
    """The sparse stage's model: LSQ rules for the kept values (`sparse.bits`, `sparse.group`), the
    linears pruned by `sparse.method` under `sparse.rules` (calibrated on training batches), masks
    fixed. -> (graphdef, pruned State, the dense State of the same structure: the teacher)."""
    s = config.sparse
    local = jax.device_put(full, jax.local_devices()[0])  # on one device, as quantized_params
    model = sparse_structure(s.bits, s.group)(nnx.merge(graphdef, local))
    dense = jax.tree.map(jnp.copy, nnx.state(model))
    run = None
    if s.method != "magnitude":
        run = calibration_run(calibration_batches(config, model_cfg, s.calib_batches))
    prune_model(model, s.rules, s.method, run)
    graphdef, state = nnx.split(model)
    place = lambda st: jax.device_put(st, state_shardings(st, mesh, rules))  # noqa: E731
    return graphdef, place(state), place(dense)


def initial_state(config, model_cfg, mesh, rules, stage, objective):
    """(graphdef, TrainState, optimizer) at step 0, every array in its sharding."""
    graphdef, full = initial_params(config, model_cfg, mesh, rules)
    teacher = None
    if stage.objective == "qat":
        graphdef, full = quantized_params(config, model_cfg, graphdef, full, mesh, rules)
    elif stage.objective == "sparse":
        graphdef, full, dense = sparse_params(config, model_cfg, graphdef, full, mesh, rules)
        teacher = nnx.split(nnx.merge(graphdef, dense), is_trainable(stage), ...)[1]
    if stage.adapters is not None:
        graphdef, full = adapter_params(config, model_cfg, stage, graphdef, full, mesh, rules)
    if stage.objective in DRAFT_RECIPES:  # eagle / hass: a draft head on the frozen target
        graphdef, full = trainee_state(config, model_cfg, graphdef, full, mesh, rules)
    graphdef, params, frozen = nnx.split(nnx.merge(graphdef, full), is_trainable(stage), ...)
    optimizer = make_optimizer(config.optim, config.steps)
    replicated = NamedSharding(mesh, PartitionSpec())
    scalar = lambda v: jax.device_put(jnp.asarray(v, jnp.int32), replicated)  # noqa: E731
    opt_state = jax.jit(
        optimizer.init, out_shardings=optimizer_shardings(optimizer, params, replicated)
    )(params)
    state = TrainState(
        step=scalar(0),
        params=params,
        frozen=frozen,
        opt_state=opt_state,
        rng=jax.device_put(jax.random.PRNGKey(config.seed), replicated),
        bad_steps=scalar(0),
        skipped_steps=scalar(0),
        # e.g. the reference policy: a sharded copy (sparse: the dense model before pruning)
        extra=jax.jit(objective.init_extra)(params if teacher is None else teacher),
    )
    return graphdef, state, optimizer


def task_context(data):
    """The synthetic generators' TaskContext from a run config's `data` section."""
    from andesvl_jax.data.synthetic import TaskContext

    long = {"long_context": tuple(data.long_context)} if data.long_context else {}
    return TaskContext(data.min_side, data.max_side, **long)


def training_data(
    config,
    model_cfg,
    data_stage: str,
    local_batch: int,
    process_index: int | None = None,
    process_count: int | None = None,
):
    """The stage's packed-batch IterDataset for this process (default: jax's process index and count)."""
    d = config.data
    dcfg = DataConfig.for_model(
        model_cfg,
        stage=data_stage,
        batch_size=local_batch,
        seed=config.seed,
        max_tokens=d.max_tokens,
        max_patches=d.max_patches,
        image_max_size=d.image_max_size,
        on_error=d.on_error,
        worker_count=d.worker_count,
    )
    tokenizer = run_tokenizer(config)
    if d.format == "synthetic" and not d.sources:
        from andesvl_jax.data.synthetic import SyntheticSource

        mixture = dict(d.mixture) if d.mixture else dcfg.defaults.mixture
        source = SyntheticSource(
            mixture,
            size=d.size,
            seed=config.seed,
            split="train",
            ctx=task_context(d),
        )
    elif d.sources:
        source = open_mixture(d.sources.to_dict(), seed=config.seed)
    else:
        source = open_dataset(d.format, d.path, image_root=d.image_root)
    return make_dataset(source, dcfg, tokenizer, process_index, process_count)


def optimizer_shardings(optimizer, params, replicated: NamedSharding):
    """Each optimizer buffer takes the sharding of the parameter it mirrors; counters are replicated."""
    by_path = {
        tuple(map(str, path)): leaf.sharding
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }

    def pick(path, _):
        keys = tuple(map(str, path))
        return next(
            (by_path[keys[i:]] for i in range(len(keys)) if keys[i:] in by_path), replicated
        )

    return jax.tree_util.tree_map_with_path(pick, jax.eval_shape(optimizer.init, params))


def global_batch(batch: TrainBatch, shardings: TrainBatch) -> TrainBatch:
    """This process's rows -> global arrays (each process passes its own local rows)."""
    return jax.tree.map(
        lambda x, s: jax.make_array_from_process_local_data(s, np.asarray(x)), batch, shardings
    )


def _global_count(segment_ids) -> float:
    """Non-padding entries of this process's host batch [B, L], times the process count: counted
    on the host, since reading the device copy would wait for the step."""
    return float(np.count_nonzero(np.asarray(segment_ids) > 0) * jax.process_count())


class BadStepWatch:
    """The non-finite guard without a per-step sync.

    Each step's on-device `finite` flag (a metric of the step; the state's own `bad_steps` is
    donated to the next step) is recorded and read at the next sync step, where the consecutive
    count is replayed on the host exactly as trainer.py counts `bad_steps`: a run of `limit` bad
    steps is caught there even if a good step ended it since (skipped updates change no weights).
    """

    def __init__(self, limit: int, bad_steps: int = 0):
        self.limit, self.bad_steps = limit, bad_steps  # consecutive bad steps at the last check
        self._pending: list[tuple[int, jax.Array]] = []

    def record(self, step: int, finite: jax.Array) -> None:
        self._pending.append((step, finite))

    def check(self) -> tuple[int | None, int]:
        """(first recorded step where the count reached the limit, or None; the latest count)."""
        hit = None
        for step, finite in zip(
            [s for s, _ in self._pending],
            jax.device_get([f for _, f in self._pending]),
            strict=True,
        ):
            self.bad_steps = 0 if bool(finite) else self.bad_steps + 1
            if hit is None and self.bad_steps >= self.limit:
                hit = step
        self._pending = []
        return hit, self.bad_steps


class _Terminate:
    """SIGTERM sets a flag; the loop saves a checkpoint and exits cleanly."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_):
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self.previous)


def train(config, workdir: str | pathlib.Path, devices=None, step_context=None) -> dict:
    """Run (or resume) one stage; returns a summary dict (also written to the metrics file).

    devices: the devices of the mesh (default: all); tests use it for single-device references.
    step_context: `step_context(syncs)` -> a context manager around each step's body (fetching its
    batch, counting its tokens, dispatching it); `syncs` is False on steps that must not wait on
    the device (tests wrap those in `jax.transfer_guard_device_to_host("disallow")`). A GRPO
    batch fetch samples a rollout round from the device, so only non-GRPO stages are sync-free.
    """
    validate_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:  # what `load_run_config` (chat, eval) rebuilds the model from
        atomic_write_text(workdir / RUN_CONFIG, config.to_json_best_effort(indent=2))
    mesh = make_mesh(dict(config.mesh), devices)
    rules = tuple(tuple(r) for r in config.rules) if config.rules else DEFAULT_RULES
    stage = get_stage(config.stage)
    model_cfg = model_config(config)
    step_shape(config, model_cfg, stage, mesh)  # clear errors before anything compiles

    objective = OBJECTIVES[stage.objective](config)
    graphdef, state, optimizer = initial_state(config, model_cfg, mesh, rules, stage, objective)
    state_sh = jax.tree.map(lambda x: x.sharding, state)

    if stage.objective == "grpo":  # the data is sampled from the policy being trained
        from andesvl_jax.train.rollouts import RolloutIterator, RolloutSpec

        iterator = RolloutIterator(
            RolloutSpec.from_config(config),
            run_tokenizer(config),
            policy=lambda: nnx.merge(graphdef, state.params, state.frozen),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
    else:
        local_batch = config.data.batch_size // jax.process_count()
        data_stage = config.data.stage or stage.data_stage
        iterator = iter(training_data(config, model_cfg, data_stage, local_batch))
    ckpt = Checkpointer(
        workdir / "checkpoints", keep=config.keep_checkpoints, async_save=config.async_checkpoints
    )
    start = ckpt.latest_step() or 0
    if start:
        state, data_state = ckpt.restore(start, state)
        iterator.set_state(data_state)

    first = next(iterator)
    batch_sh = batch_shardings(first, mesh)
    step_fn = jit_train_step(
        make_train_step(
            graphdef,
            optimizer,
            accum_steps=config.optim.accum_steps,
            objective=objective,
            mesh=mesh,
            rules=rules,
        ),
        state_sh,
        batch_sh,
    )
    writer = MetricsWriter(
        workdir, tensorboard=config.tensorboard, process_index=jax.process_index()
    )
    progress = Progress(
        start, config.steps, f"{config.stage}", enabled=config.progress and jax.process_index() == 0
    )
    terminate = _Terminate()
    peak = config.peak_flops  # None: no MFU column
    losses, stop_reason, t_last, tokens_since, flops_since = (
        [],
        "completed",
        time.perf_counter(),
        0.0,
        0.0,
    )
    seq_len, max_patches = first.input_ids.shape[1], first.images.patches.shape[1]
    step_context = step_context or (lambda syncs: contextlib.nullcontext())
    watch = BadStepWatch(config.max_bad_steps, int(state.bad_steps))
    batch, step, steps_since = first, start, 0
    try:
        while step < config.steps:
            log_now = (step + 1) % config.log_every == 0 or step + 1 == config.steps
            save_due = (step + 1) % config.save_every == 0 or step + 1 == config.steps
            with step_context(log_now or save_due):
                batch = next(iterator) if batch is None else batch
                fill = packing_efficiency(batch)
                text_tokens = _global_count(batch.segment_ids)
                patches = _global_count(batch.images.segment_ids)
                state, metrics = step_fn(state, global_batch(batch, batch_sh))
                batch, step, steps_since = None, step + 1, steps_since + 1
                watch.record(step, metrics["finite"])
                tokens_since += text_tokens
                flops_since += train_flops(model_cfg, text_tokens, patches, seq_len, max_patches)
            if not (log_now or save_due or terminate.requested):
                continue
            hit, bad_now = watch.check()
            if hit is not None:
                stop_reason = f"{config.max_bad_steps} non-finite steps in a row"
                raise NonFiniteError(
                    f"step {hit}: {stop_reason} (seen at step {step}); last good checkpoint kept "
                    f"at step {ckpt.latest_step()}"
                )
            if log_now:
                m, skipped = jax.device_get((metrics, state.skipped_steps))
                m = {k: float(v) for k, v in m.items()}
                elapsed = time.perf_counter() - t_last
                m.update(
                    tokens_per_s=tokens_since / elapsed,
                    step_time_s=elapsed / steps_since,
                    token_fill=fill["token_fill"],
                    patch_fill=fill["patch_fill"],
                    skipped_steps=int(skipped),
                )
                if peak:
                    m["mfu"] = flops_since / elapsed / peak
                losses.append((step, m["loss"]))
                writer.write(step, m)
                progress.update(steps_since, m)
                t_last, tokens_since, flops_since, steps_since = time.perf_counter(), 0.0, 0.0, 0
            if (save_due or terminate.requested) and bad_now == 0:
                ckpt.save(step, state, iterator.get_state(), force=True)
            if terminate.requested:
                stop_reason = "SIGTERM"
                break
    finally:
        terminate.restore()
        progress.close()
        ckpt.close()
        writer.close()
    if stage.adapters is not None and jax.process_index() == 0:
        write_adapter(graphdef, state, workdir)
    summary = {
        "stage": config.stage,
        "steps": step,
        "stop_reason": stop_reason,
        "final_loss": losses[-1][1] if losses else None,
        "skipped_steps": int(state.skipped_steps),
        "data": pipeline_stats(iterator.get_state()),
    }
    if stage.objective in DRAFT_RECIPES and jax.process_index() == 0:
        from andesvl_jax.infer.speculative.draft_io import save_draft

        trained = nnx.merge(graphdef, state.params, state.frozen)
        summary["draft"] = str(save_draft(trained.draft, workdir / "draft"))
    writer.enabled and writer.write(step, {"summary": summary})
    return summary
