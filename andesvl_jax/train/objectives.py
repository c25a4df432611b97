"""What a train step minimises, as a registry: next-token cross-entropy, MPO, GRPO.

An objective turns (policy, reference, micro-batch, extra state) into a loss *sum* plus statistics
that are sums too, one of them the `normaliser` (target tokens for cross-entropy and GRPO, pairs for
MPO). The trainer adds both over the micro-batches of a step and divides once, so gradient
accumulation equals one large batch exactly, whatever the objective.

`extra` is the objective's own state in TrainState (checkpointed with it): the frozen reference
policy of MPO/GRPO, and MPO's running BCO shift delta.

`loss_chunk` (config `optim.loss_chunk`): sequence positions per LM-head chunk (train/chunked_loss.py),
so no objective materialises the full [b, t, vocab] logits; None / 0 = the model's full logits
(what a model without `return_hidden` / `llm.logits`, e.g. a test's bigram table, needs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from andesvl_jax.compress.qlinear import set_quantization
from andesvl_jax.train.eagle import draft_loss, recipe_of
from andesvl_jax.train.grpo import GRPOConfig, grpo_loss
from andesvl_jax.train.losses import chunked_next_token_loss, next_token_loss
from andesvl_jax.train.mpo import BCODelta, MPOConfig, mpo_loss
from andesvl_jax.train.sequence_logprobs import batch_token_logprobs, sequence_logprob


@dataclasses.dataclass(frozen=True)
class Objective:
    # (policy, reference or None, batch, extra) -> (loss sum, stats sums incl. "normaliser")
    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    # trainable params -> extra state (the reference is a copy of the starting policy)
    init_extra: Callable[[Any], dict] = lambda params: {}
    # (extra, stats summed over the step) -> extra after the step
    update_extra: Callable[[dict, dict], dict] = lambda extra, stats: extra
    # step stats sums -> the logged metrics (besides loss)
    summarise: Callable[[dict], dict] = lambda stats: {}


def _forward(model, batch, return_hidden: bool = False):
    out, _ = model(
        batch.input_ids,
        batch.images,
        positions=batch.positions,
        segment_ids=batch.segment_ids,
        **({"return_hidden": True} if return_hidden else {}),
    )
    return out


def next_token_objective(z_loss: float = 0.0, loss_chunk: int | None = None) -> Objective:
    def loss(model, reference, batch, extra):
        if loss_chunk:
            total, stats = chunked_next_token_loss(
                model.llm.logits,
                _forward(model, batch, return_hidden=True),
                batch.targets,
                batch.loss_mask,
                z_loss,
                chunk=loss_chunk,
            )
        else:
            total, stats = next_token_loss(
                _forward(model, batch), batch.targets, batch.loss_mask, z_loss
            )
        return total, {**stats, "normaliser": stats["tokens"]}

    return Objective(
        loss, summarise=lambda s: {"token_accuracy": s["correct"] / jnp.maximum(s["tokens"], 1)}
    )


def _reference_copy(params):
    return {"reference": jax.tree.map(jnp.copy, params)}


def _row_logprobs(model, batch, chunk: int | None) -> jax.Array:
    """Sum of trained-token log-probs per row [B] (one sequence per row)."""
    return sequence_logprob(batch_token_logprobs(model, batch, chunk=chunk), batch.loss_mask)


def mpo_objective(cfg: MPOConfig | None = None, loss_chunk: int | None = None) -> Objective:
    """Rows 2i / 2i+1 of a batch are prompt+chosen / prompt+rejected (data/preference.py)."""
    cfg = cfg or MPOConfig()

    def loss(model, reference, batch, extra):
        policy = _row_logprobs(model, batch, loss_chunk)
        ref = jax.lax.stop_gradient(_row_logprobs(reference, batch, loss_chunk))
        chosen_tokens = jnp.sum(batch.loss_mask[0::2], axis=1)
        mean, m = mpo_loss(
            policy[0::2],
            policy[1::2],
            ref[0::2],
            ref[1::2],
            chosen_tokens,
            extra["delta"].value(),
            cfg,
        )
        pairs = m["pairs"]
        stats = {
            "normaliser": pairs,
            "reward_sum": m["reward_sum"],
            "reward_count": m["reward_count"],
            "reward_correct": m["reward_accuracy"] * pairs,
            "margin_sum": m["reward_margin"] * pairs,
            "dpo_sum": m["dpo_loss"] * pairs,
            "sft_sum": m["sft_loss"] * pairs,
        }
        return mean * pairs, stats

    def init_extra(params):
        return {**_reference_copy(params), "delta": BCODelta.init()}

    def update_extra(extra, stats):
        return {**extra, "delta": extra["delta"].update(stats["reward_sum"], stats["reward_count"])}

    def summarise(s):
        n = jnp.maximum(s["normaliser"], 1)
        return {
            "reward_accuracy": s["reward_correct"] / n,
            "reward_margin": s["margin_sum"] / n,
            "dpo_loss": s["dpo_sum"] / n,
            "sft_loss": s["sft_sum"] / n,
        }

    return Objective(loss, init_extra, update_extra, summarise)


def grpo_objective(cfg: GRPOConfig | None = None, loss_chunk: int | None = None) -> Objective:
    """Batches are rollouts (train/rollouts.py): one completion per row, `old_logprobs` [B, L]
    from the policy that sampled them (at cfg.temperature) and `advantages` [B]."""
    cfg = cfg or GRPOConfig()

    def loss(model, reference, batch, extra):
        policy = batch_token_logprobs(model, batch, cfg.temperature, loss_chunk)
        ref = None
        if cfg.beta:
            ref = jax.lax.stop_gradient(
                batch_token_logprobs(reference, batch, cfg.temperature, loss_chunk)
            )
        mean, m = grpo_loss(policy, batch.old_logprobs, ref, batch.advantages, batch.loss_mask, cfg)
        n = m["normaliser"]
        stats = {
            "normaliser": n,
            "kl_sum": m["kl"] * n,
            "clip_sum": m["clip_fraction"] * n,
            "ratio_sum": m["ratio"] * n,
            "reward_sum": jnp.sum(batch.rewards),
            "rows": jnp.asarray(batch.rewards.shape[0], jnp.float32),
        }
        return mean * n, stats

    def summarise(s):
        n = jnp.maximum(s["normaliser"], 1)
        return {
            "kl": s["kl_sum"] / n,
            "clip_fraction": s["clip_sum"] / n,
            "ratio": s["ratio_sum"] / n,
            "mean_reward": s["reward_sum"] / jnp.maximum(s["rows"], 1),
        }

    return Objective(loss, _reference_copy if cfg.beta else lambda p: {}, summarise=summarise)


def qat_objective(
    distill_weight: float = 0.0,
    z_loss: float = 0.0,
    loss_chunk: int | None = None,
    task_weight: float = 1.0,
) -> Objective:
    """QAT (compress/): `task_weight` x the task's next-token loss on the fake-quantized model, plus
    `distill_weight` x KL(teacher || student) per answer token, the teacher being the starting
    float model (a frozen copy of the params run with quantization switched off). task_weight 0
    is pure distillation: the student follows the float model, not the labels."""
    task = next_token_objective(z_loss, loss_chunk)
    if not distill_weight:
        return task

    def loss(model, reference, batch, extra):
        # one student forward serves the task loss and the KL (full logits: the KL needs them)
        logits = _forward(model, batch)
        total, stats = next_token_loss(logits, batch.targets, batch.loss_mask, z_loss)
        student = jax.nn.log_softmax(logits.astype(jnp.float32))
        teacher_model = set_quantization(reference, False)
        teacher = jax.lax.stop_gradient(
            jax.nn.log_softmax(_forward(teacher_model, batch).astype(jnp.float32))
        )
        kl = jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1) * batch.loss_mask
        kl_sum = jnp.sum(kl)
        return task_weight * total + distill_weight * kl_sum, {
            **stats,
            "normaliser": stats["tokens"],
            "kl_sum": kl_sum,
        }

    def summarise(s):
        n = jnp.maximum(s["tokens"], 1)
        return {**task.summarise(s), "distill_kl": s["kl_sum"] / n}

    return Objective(loss, _reference_copy, summarise=summarise)


def draft_objective(stage_objective: str, config) -> Objective:
    """EAGLE / HASS draft-head training (train/eagle.py): the stage's recipe + config `draft`."""
    loss, summarise = draft_loss(recipe_of(stage_objective, config.get("draft")))
    return Objective(loss, summarise=summarise)


def _fields(cls, section) -> dict:
    """The entries of a config section that are fields of the dataclass `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in dict(section).items() if k in names}


def grpo_config(section) -> GRPOConfig:
    """GRPOConfig from the run config's `grpo` section (epsilon_high unset = symmetric clipping)."""
    return GRPOConfig(**_fields(GRPOConfig, section))


# stage.objective -> factory(run config) -> Objective
OBJECTIVES: dict[str, Callable[[Any], Objective]] = {
    "next_token": lambda c: next_token_objective(c.optim.z_loss, c.optim.loss_chunk),
    "mpo": lambda c: mpo_objective(MPOConfig(**_fields(MPOConfig, c.mpo)), c.optim.loss_chunk),
    "grpo": lambda c: grpo_objective(grpo_config(c.grpo), c.optim.loss_chunk),
    "qat": lambda c: qat_objective(
        c.quant.distill_weight, c.optim.z_loss, c.optim.loss_chunk, c.quant.task_weight
    ),
    "eagle": lambda c: draft_objective("eagle", c),
    "hass": lambda c: draft_objective("hass", c),
    # the reference is the dense model before pruning (train/loop.py `sparse_params`)
    "sparse": lambda c: qat_objective(c.sparse.distill_weight, c.optim.z_loss, c.optim.loss_chunk),
}
