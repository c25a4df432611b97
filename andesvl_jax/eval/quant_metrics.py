"""What compression keeps, measured teacher-forced on a sample's final answer.

* top-1 decode consistency (AndesVL's QAT metric): the float model generates; both models are then
  run teacher-forced on that generation and the score is the fraction of answer positions where
  the compressed model's argmax equals the float model's argmax;
* perplexity: exp(mean negative log-likelihood) of the reference answers' tokens.

Both come from one forward per batch (`answer_predictions`), so a compressed model and its float
reference are scored on the same encoded rows.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.data.encode import answer_only_encoder
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.packing import assemble_batch
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.train.sequence_logprobs import token_logprobs


@dataclasses.dataclass(frozen=True)
class AnswerPredictions:
    """Per sample, over its answer tokens (the loss-masked targets, closing token included):
    the model's argmax and the log-probability of the reference token."""

    argmax: list[np.ndarray]
    logprob: list[np.ndarray]

    @property
    def tokens(self) -> int:
        return sum(len(a) for a in self.argmax)


@functools.partial(jax.jit, static_argnums=0)
def _predict(graphdef, state, batch):
    logits, _ = nnx.merge(graphdef, state)(
        batch.input_ids, batch.images, positions=batch.positions, segment_ids=batch.segment_ids
    )
    return jnp.argmax(logits, axis=-1), token_logprobs(logits, batch.targets)


def answer_predictions(
    model,
    tokenizer: TextTokenizer,
    samples: list[Sample],
    *,
    image_max_size: int,
    max_tokens: int,
    max_patches: int,
    rows: int = 32,
) -> AnswerPredictions:
    """Teacher-forced argmax and reference log-probs on every sample's final answer (one sample
    per row, `rows` rows per compiled batch)."""
    cfg = model.cfg
    encoder = answer_only_encoder(
        cfg, tokenizer, image_max_size=image_max_size, max_tokens=max_tokens,
        max_patches=max_patches,
    )  # fmt: skip
    graphdef, state = nnx.split(model)
    argmax, logprob = [], []
    for start in range(0, len(samples), rows):
        chunk = [[encoder(s)] for s in samples[start : start + rows]]
        padded = chunk + [chunk[-1]] * (rows - len(chunk))  # one compiled shape
        batch = assemble_batch(
            padded, max_tokens, max_patches, tokenizer.special_tokens, cfg.vision.patch_size
        )
        top, logp = (np.asarray(a) for a in _predict(graphdef, state, batch))
        for r in range(len(chunk)):
            keep = batch.loss_mask[r] > 0
            argmax.append(top[r][keep])
            logprob.append(logp[r][keep])
    return AnswerPredictions(argmax, logprob)


def fitting(
    model_cfg, tokenizer: TextTokenizer, samples: list[Sample], *, image_max_size: int,
    max_tokens: int, max_patches: int,
) -> list[int]:  # fmt: skip
    """Indices of the samples that encode within the budgets (a generated answer can be long)."""
    encoder = answer_only_encoder(
        model_cfg, tokenizer, image_max_size=image_max_size, max_tokens=max_tokens,
        max_patches=max_patches,
    )  # fmt: skip
    kept = []
    for i, s in enumerate(samples):
        try:
            encoder(s)
        except DataError:
            continue
        kept.append(i)
    return kept


def with_answers(samples: list[Sample], answers: list[str]) -> list[Sample]:
    """`samples` with their final answer replaced (e.g. by the float model's generation)."""
    return [
        dataclasses.replace(s, messages=[*s.prompt, Message("assistant", a)])
        for s, a in zip(samples, answers, strict=True)
    ]


def top1_consistency(reference: AnswerPredictions, other: AnswerPredictions) -> dict:
    """Fraction of answer positions where `other`'s argmax equals `reference`'s (same rows)."""
    same = total = 0
    for a, b in zip(reference.argmax, other.argmax, strict=True):
        if a.shape != b.shape:
            raise ValueError(f"answer lengths differ ({a.shape} vs {b.shape}): not the same rows")
        same += int(np.sum(a == b))
        total += a.size
    return {"top1_consistency": same / max(total, 1), "positions": total}


def perplexity(predictions: AnswerPredictions) -> dict:
    """exp(mean NLL) over every answer token."""
    logp = np.concatenate(predictions.logprob) if predictions.logprob else np.zeros(0)
    return {"perplexity": math.exp(-float(np.mean(logp))) if logp.size else float("nan"),
            "tokens": int(logp.size)}  # fmt: skip
