"""The one train step: a pure function of (TrainState, batch), jitted with explicit shardings and donation.

Trainable and frozen parameters are separate pytrees (frozen ones have no optimizer state and no
gradient). Gradient accumulation scans over micro-batches and normalises by the global token count,
so it equals one large batch. A step whose loss or gradients are not finite is skipped (parameters
and optimizer state unchanged) and counted; the loop stops after `max_bad_steps` in a row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from andesvl_jax.data.batch import TrainBatch
from andesvl_jax.sharding import LogicalRules, use_mesh_rules
from andesvl_jax.train.objectives import Objective, next_token_objective
from andesvl_jax.train.optim import AdamW


class TrainState(NamedTuple):
    step: jax.Array
    params: Any  # nnx.State of trainable parameters
    frozen: Any  # nnx.State of frozen parameters
    opt_state: Any
    rng: jax.Array
    bad_steps: jax.Array  # consecutive non-finite steps
    skipped_steps: jax.Array  # total non-finite steps skipped
    extra: Any = None  # the objective's own state (objectives.py): reference policy, BCO delta


def batch_shardings(batch: TrainBatch, mesh: Mesh) -> TrainBatch:
    """Every batch array is split along its first (batch) axis over data x fsdp."""
    spec = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    return jax.tree.map(lambda _: spec, batch)


def _split_micro(batch: TrainBatch, accum: int) -> TrainBatch:
    def split(x):
        if x.shape[0] % accum:
            raise ValueError(f"batch of {x.shape[0]} rows is not divisible by accum_steps={accum}")
        return x.reshape(accum, x.shape[0] // accum, *x.shape[1:])

    return jax.tree.map(split, batch)


def make_train_step(
    graphdef,
    optimizer: AdamW,
    *,
    accum_steps: int = 1,
    objective: Objective | None = None,
    mesh: Mesh | None = None,
    rules: LogicalRules | None = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """The pure step function (jit it with `jit_train_step`). objective: default next-token CE."""
    objective = objective or next_token_objective()

    def loss_fn(params, frozen, extra, batch):
        model = nnx.merge(graphdef, params, frozen)
        reference = None
        if extra and "reference" in extra:
            reference = nnx.merge(graphdef, extra["reference"], frozen)
        return objective.loss(model, reference, batch, extra)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch):
        def micro(carry, mb):
            # The weights ride in the carry: NNX modules must be rebuilt at the scan's trace level.
            grads, stats, params, frozen, extra = carry
            (value, s), g = grad_fn(params, frozen, extra, mb)
            s = {**s, "loss_sum": value}
            return (
                jax.tree.map(jnp.add, grads, g),
                jax.tree.map(jnp.add, stats, s),
                params,
                frozen,
                extra,
            ), None

        def accumulated(batch):
            micro_batches = _split_micro(batch, accum_steps)
            first = jax.tree.map(lambda x: x[0], micro_batches)
            value, shapes = jax.eval_shape(loss_fn, state.params, state.frozen, state.extra, first)
            shapes = {**shapes, "loss_sum": value}
            zeros = jax.tree.map(jnp.zeros_like, state.params)
            stats0 = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
            carry = (zeros, stats0, state.params, state.frozen, state.extra)
            (grads, stats, _, _, _), _ = jax.lax.scan(micro, carry, micro_batches)
            return grads, stats

        def whole(batch):  # no loop: XLA fuses across the step and keeps no accumulator
            (value, stats), grads = grad_fn(state.params, state.frozen, state.extra, batch)
            return grads, {**stats, "loss_sum": value}

        grads, stats = (accumulated if accum_steps > 1 else whole)(batch)
        normaliser = jnp.maximum(stats["normaliser"], 1.0)
        grads = jax.tree.map(lambda g: g / normaliser, grads)
        loss = stats["loss_sum"] / normaliser
        grad_norm = optax.tree.norm(grads)
        # The AdamW update is finite when the gradient, the learning rate and the moments are, and
        # the moments only ever take finite gradients: checking the update itself would cost a pass.
        lr = optimizer.learning_rate(state.opt_state)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(lr)
        params, opt_state = optimizer.update(
            grads, state.opt_state, state.params, grad_norm, finite
        )
        extra = objective.update_extra(state.extra, stats)
        new_state = TrainState(
            step=state.step + 1,
            params=params,
            frozen=state.frozen,
            opt_state=opt_state,
            rng=jax.random.fold_in(state.rng, state.step),
            bad_steps=jnp.where(finite, 0, state.bad_steps + 1),
            skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
            extra=jax.tree.map(lambda a, b: jnp.where(finite, a, b), extra, state.extra),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": lr,  # the base rate of this update (skipped steps do not advance it)
            "tokens": stats["normaliser"],
            "finite": finite,
            **objective.summarise(stats),
        }
        return new_state, metrics

    if mesh is None:
        return step

    def step_in_mesh(state, batch):
        with use_mesh_rules(mesh, rules):
            return step(state, batch)

    return step_in_mesh


def jit_train_step(step_fn, state_shardings, batch_sharding):
    """jax.jit with explicit in/out shardings; the old state is donated."""
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, None),
        donate_argnums=(0,),
    )


def state_shardings_of(state: TrainState):
    return jax.tree.map(lambda x: x.sharding, state)
