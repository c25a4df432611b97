"""Mixed Preference Optimization (InternVL MPO), the Instruct models' preference stage.

    L = dpo_weight * L_dpo + bco_weight * L_bco + sft_weight * L_sft     (0.8, 0.2, 1.0; beta 0.1)
    r(y)  = beta * (log pi_theta(y|x) - log pi_ref(y|x))
    L_dpo = -log sigmoid(r(y_c) - r(y_r))
    L_bco = -log sigmoid(r(y_c) - delta) - log sigmoid(-(r(y_r) - delta))
    L_sft = -log pi_theta(y_c|x) / |y_c|

each averaged over the pairs of the batch. delta is the BCO reward shift: the cumulative running
mean of the batch-means of [r(y_c), r(y_r)] (`BCODelta`), used with a stop-gradient.

delta timing (our convention): the delta used for batch k is the mean over batches 0..k-1 only;
batch 0 uses delta = 0. The trainer reads `BCODelta.value(state)` before the step, passes it to
`mpo_loss`, then folds the step's `metrics["reward_sum"]` / `metrics["reward_count"]` in with
`BCODelta.update`. (TRL's `bco_pair`, which InternVL uses, updates its RunningMoments with the
current batch before reading it, i.e. batches 0..k; DESIGN §6 says "previous batches", which is
what we do. The difference is one batch's weight in a long mean.)

Multi-host: `mpo_loss` runs inside the jitted, sharded step on global [b] arrays, so its sums and
means are over the global batch (all hosts) with no extra collective; every host then holds the
same replicated scalars and applies the same `BCODelta.update`, so the state stays identical on
all hosts (and is checkpointed like any other replicated pytree).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class MPOConfig:
    """Loss weights and the DPO temperature beta (InternVL MPO defaults)."""

    dpo_weight: float = 0.8
    bco_weight: float = 0.2
    sft_weight: float = 1.0
    beta: float = 0.1


class BCODelta(NamedTuple):
    """Running state of the BCO shift delta: sum of past batch-means and how many batches.

    Each batch counts once, whatever its size (a mean of batch-means, as TRL's RunningMoments fed
    one scalar per step). A batch with `batch_count == 0` (every pair padded) is skipped.
    """

    sum: jax.Array
    count: jax.Array

    @staticmethod
    def init() -> BCODelta:
        """State before the first batch: value() is 0."""
        return BCODelta(sum=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32))

    def update(self, batch_rewards_sum: jax.Array, batch_count: jax.Array) -> BCODelta:
        """Fold in one (global) batch: its sum of r(y_c) and r(y_r) over `batch_count` values."""
        batch_count = jnp.asarray(batch_count, jnp.float32)
        has_values = batch_count > 0
        batch_mean = jnp.asarray(batch_rewards_sum, jnp.float32) / jnp.maximum(batch_count, 1.0)
        return BCODelta(
            sum=self.sum + jnp.where(has_values, batch_mean, 0.0),
            count=self.count + has_values.astype(jnp.int32),
        )

    def value(self) -> jax.Array:
        """The delta for the next batch: mean of the batch-means seen so far (0 before any)."""
        count = self.count.astype(jnp.float32)
        return jnp.where(count > 0, self.sum / jnp.maximum(count, 1.0), 0.0)


def mpo_loss(
    policy_chosen_logp: jax.Array,
    policy_rejected_logp: jax.Array,
    ref_chosen_logp: jax.Array,
    ref_rejected_logp: jax.Array,
    chosen_tokens: jax.Array,
    delta: jax.Array | float,
    cfg: MPOConfig | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MPO loss of a batch of preference pairs, mean over the batch.

    policy_*_logp, ref_*_logp: [b] sequence log-probs (sums over response tokens, see
    `sequence_logprob`); chosen_tokens: [b] |y_c| (clamped to >= 1); delta: scalar BCO shift from
    `BCODelta.value` (stop-gradient is applied here). The reference log-probs are constants (a
    stop-gradient is applied too). Returns (loss, metrics); metrics carry `reward_sum` and
    `reward_count` for `BCODelta.update`, and `loss_sum` / `pairs` for exact accumulation.
    cfg None means MPOConfig().
    """
    cfg = cfg or MPOConfig()
    pc = policy_chosen_logp.astype(jnp.float32)
    pr = policy_rejected_logp.astype(jnp.float32)
    rc_ref = jax.lax.stop_gradient(ref_chosen_logp.astype(jnp.float32))
    rr_ref = jax.lax.stop_gradient(ref_rejected_logp.astype(jnp.float32))
    delta = jax.lax.stop_gradient(jnp.asarray(delta, jnp.float32))

    r_chosen = cfg.beta * (pc - rc_ref)
    r_rejected = cfg.beta * (pr - rr_ref)
    dpo = -jax.nn.log_sigmoid(r_chosen - r_rejected)
    bco = -jax.nn.log_sigmoid(r_chosen - delta) - jax.nn.log_sigmoid(-(r_rejected - delta))
    sft = -pc / jnp.maximum(chosen_tokens.astype(jnp.float32), 1.0)
    per_pair = cfg.dpo_weight * dpo + cfg.bco_weight * bco + cfg.sft_weight * sft

    loss = jnp.mean(per_pair)
    r_c, r_r = jax.lax.stop_gradient(r_chosen), jax.lax.stop_gradient(r_rejected)
    reward_sum = jnp.sum(r_c) + jnp.sum(r_r)
    reward_count = jnp.asarray(2 * r_c.shape[0], jnp.float32)
    metrics = {
        "loss": jax.lax.stop_gradient(loss),
        "loss_sum": jax.lax.stop_gradient(jnp.sum(per_pair)),
        "pairs": jnp.asarray(r_c.shape[0], jnp.float32),
        "dpo_loss": jax.lax.stop_gradient(jnp.mean(dpo)),
        "bco_loss": jax.lax.stop_gradient(jnp.mean(bco)),
        "sft_loss": jax.lax.stop_gradient(jnp.mean(sft)),
        "reward_chosen": jnp.mean(r_c),
        "reward_rejected": jnp.mean(r_r),
        "reward_margin": jnp.mean(r_c - r_r),
        "reward_accuracy": jnp.mean((r_c > r_r).astype(jnp.float32)),
        "reward_batch_mean": reward_sum / reward_count,
        "reward_sum": reward_sum,
        "reward_count": reward_count,
        "delta": delta,
    }
    return loss, metrics
