"""Interleaved step timing of ablation cells: the step-time ratio without the machine's load in it.

Training logs time each run at a different moment, and on a shared machine the load changes
between runs (docs/ablations.md saw 1.0-3.4 s/step for one cell). Here every cell's compiled
training step runs on its first batch, round-robin: round r times `steps` steps of each cell in
turn (the order rotated every round), so each round's ratio to the baseline cell compares steps
taken seconds apart. The ratio is reported as the median over rounds with its [min-max].
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax

from andesvl_jax.convert.workdir import model_config
from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
from andesvl_jax.train.config_checks import validate_config
from andesvl_jax.train.loop import global_batch, initial_state, training_data
from andesvl_jax.train.objectives import OBJECTIVES
from andesvl_jax.train.stages import get_stage
from andesvl_jax.train.trainer import batch_shardings, jit_train_step, make_train_step


def step_runner(config) -> Callable[[], None]:
    """One compiled training step of `config` on its first batch; calling it runs one step (the
    state advances, as in training) and waits for it. Compiled and run once before returning."""
    validate_config(config)
    mesh = make_mesh(dict(config.mesh), None)
    rules = tuple(tuple(r) for r in config.rules) if config.rules else DEFAULT_RULES
    stage = get_stage(config.stage)
    model_cfg = model_config(config)
    objective = OBJECTIVES[stage.objective](config)
    graphdef, state, optimizer = initial_state(config, model_cfg, mesh, rules, stage, objective)
    data_stage = config.data.stage or stage.data_stage
    batch = next(iter(training_data(config, model_cfg, data_stage, config.data.batch_size)))
    batch_sh = batch_shardings(batch, mesh)
    step_fn = jit_train_step(
        make_train_step(
            graphdef,
            optimizer,
            accum_steps=config.optim.accum_steps,
            objective=objective,
            mesh=mesh,
            rules=rules,
        ),
        jax.tree.map(lambda x: x.sharding, state),
        batch_sh,
    )
    device_batch = global_batch(batch, batch_sh)
    holder = [state]

    def step() -> None:
        holder[0], metrics = step_fn(holder[0], device_batch)
        jax.block_until_ready((holder[0], metrics))

    step()  # compile
    return step


def interleaved_step_times(
    configs: dict, rounds: int = 5, steps: int = 2, baseline: str | None = None
) -> dict[str, dict]:
    """cell -> {median_s, min_s, max_s, ratio, ratio_min, ratio_max, rounds} (ratio: step time
    over the baseline cell's in the same round; baseline default: the first cell)."""
    if rounds < 1 or steps < 1:
        raise ValueError(
            f"interleaved_step_times: rounds and steps must be >= 1; got {rounds}, {steps}"
        )
    names = list(configs)
    baseline = baseline if baseline in configs else names[0]
    runners = {name: step_runner(configs[name]) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            for _ in range(steps):
                runners[name]()
            times[name].append((time.perf_counter() - start) / steps)
    out = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[baseline], strict=True)]
        out[name] = {
            "median_s": statistics.median(ts),
            "min_s": min(ts),
            "max_s": max(ts),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "rounds": rounds,
            "baseline": baseline,
        }
    return out
