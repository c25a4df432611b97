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
from andesvl_jax.train.losses import next_token_loss
from andesvl_jax.train.sharding import LogicalRules, use_mesh_rules


class TrainState(NamedTuple):
    step: jax.Array
    params: Any  # nnx.State of trainable parameters
    frozen: Any  # nnx.State of frozen parameters
    opt_state: Any
    rng: jax.Array
    bad_steps: jax.Array  # consecutive non-finite steps
    skipped_steps: jax.Array  # total non-finite steps skipped


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
    optimizer: optax.GradientTransformation,
    schedule,
    *,
    accum_steps: int = 1,
    z_loss: float = 0.0,
    mesh: Mesh | None = None,
    rules: LogicalRules | None = None,
) -> Callable[[TrainState, TrainBatch], tuple[TrainState, dict]]:
    """The pure step function (jit it with `jit_train_step`)."""

    def loss_fn(params, frozen, batch: TrainBatch):
        model = nnx.merge(graphdef, params, frozen)
        logits, _ = model(
            batch.input_ids, batch.images, positions=batch.positions, segment_ids=batch.segment_ids
        )
        return next_token_loss(logits, batch.targets, batch.loss_mask, z_loss)

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: TrainBatch):
        def micro(carry, mb):
            # The weights ride in the carry: NNX modules must be rebuilt at the scan's trace level.
            grads, stats, params, frozen = carry
            g, s = grad_fn(params, frozen, mb)
            return (
                jax.tree.map(jnp.add, grads, g),
                jax.tree.map(jnp.add, stats, s),
                params,
                frozen,
            ), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        stats0 = jax.tree.map(jnp.float32, {"ce_sum": 0.0, "tokens": 0.0, "correct": 0.0})
        carry = (zeros, stats0, state.params, state.frozen)
        (grads, stats, _, _), _ = jax.lax.scan(micro, carry, _split_micro(batch, accum_steps))
        tokens = jnp.maximum(stats["tokens"], 1.0)
        grads = jax.tree.map(lambda g: g / tokens, grads)
        loss = stats["ce_sum"] / tokens
        grad_norm = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # A bad learning rate or optimizer state can poison the update even when the gradient is fine.
        finite = (
            jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.global_norm(updates))
        )
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            frozen=state.frozen,
            opt_state=keep(opt_state, state.opt_state),
            rng=jax.random.fold_in(state.rng, state.step),
            bad_steps=jnp.where(finite, 0, state.bad_steps + 1),
            skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": schedule(state.step),
            "tokens": stats["tokens"],
            "token_accuracy": stats["correct"] / tokens,
            "finite": finite,
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
