"""The `functional` training stages and objective, registered into train/'s registries.

`functional`: every module trains on the agent corpus, answer-only next-token loss on the call,
each target that is a functional token (`<nexa_i>`, `<nexa_none>`, `<nexa_end>`) weighted by
`config.agent.functional_weight` (the single-token function choice is the decision that matters;
weight 1 = plain SFT). `functional_lora`: the same loss on LoRA factors only (config.lora).
The loss is a weighted mean: sum(w * CE) / sum(w) over the answer tokens.
"""

from __future__ import annotations

import jax.numpy as jnp

from andesvl_jax.agent.functions import load_functions, phone_functions
from andesvl_jax.agent.vocab import functional_ids
from andesvl_jax.convert.workdir import run_tokenizer
from andesvl_jax.train.chunked_loss import map_head_chunks
from andesvl_jax.train.losses import reduce_next_token, token_cross_entropy
from andesvl_jax.train.objectives import OBJECTIVES, Objective
from andesvl_jax.train.stages import ALL, STAGES, Stage


def config_registry(config):
    """The run's function registry: config.agent.functions (a file), default the phone APIs."""
    path = config.agent.get("functions") if "agent" in config else None
    return load_functions(path) if path else phone_functions()


def functional_objective(ids, weight: float, loss_chunk: int | None) -> Objective:
    """Weighted next-token loss: targets in `ids` (the functional tokens) weigh `weight`."""
    ids = jnp.asarray(ids, jnp.int32)

    def loss(model, reference, batch, extra):
        out, _ = model(
            batch.input_ids,
            batch.images,
            positions=batch.positions,
            segment_ids=batch.segment_ids,
            **({"return_hidden": True} if loss_chunk else {}),
        )
        if loss_chunk:
            ce, lse, correct = map_head_chunks(
                token_cross_entropy, model.llm.logits, out, batch.targets, chunk=loss_chunk
            )
        else:
            ce, lse, correct = token_cross_entropy(out, batch.targets)
        is_functional = jnp.isin(batch.targets, ids)
        mask = batch.loss_mask.astype(jnp.float32)
        weights = mask * jnp.where(is_functional, weight, 1.0)
        total, stats = reduce_next_token(ce, lse, correct, weights, 0.0)
        fmask = mask * is_functional
        return total, {
            **stats,
            "normaliser": stats["tokens"],
            "functional_tokens": jnp.sum(fmask),
            "functional_correct": jnp.sum(correct * fmask),
        }

    def summarise(s):
        return {
            "token_accuracy": s["correct"] / jnp.maximum(s["tokens"], 1),
            "functional_accuracy": s["functional_correct"] / jnp.maximum(s["functional_tokens"], 1),
        }

    return Objective(loss, summarise=summarise)


def _objective_from_config(c) -> Objective:
    ids = functional_ids(run_tokenizer(c), config_registry(c))
    return functional_objective(
        ids, float(c.agent.get("functional_weight", 1.0)), c.optim.loss_chunk
    )


def register() -> None:
    OBJECTIVES.setdefault("functional", _objective_from_config)
    for stage in (
        Stage(
            "functional",
            ALL,
            "demo",
            "functional-token training (Octopus v2/v3): the agent corpus, answer-only loss with the "
            "functional tokens weighted by agent.functional_weight",
            objective="functional",
        ),
        Stage(
            "functional_lora",
            ("llm",),
            "demo",
            "the functional stage's loss on LoRA factors of the LLM (config.lora); the grown "
            "embedding rows stay as initialised",
            objective="functional",
            adapters="float",
        ),
    ):
        STAGES.setdefault(stage.name, stage)
