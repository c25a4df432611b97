"""Exact-match evaluation of short-answer tasks (held-out synthetic questions) by greedy decoding."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.patches import pack_images
from andesvl_jax.data.sample import Sample
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.greedy import greedy_generate


def prompt_of(sample: Sample) -> Sample:
    """The sample without its final assistant answer (the model must produce it)."""
    if sample.messages[-1].role != "assistant":
        raise ValueError(f"{sample.origin}: last message is not an assistant answer")
    return dataclasses.replace(sample, messages=sample.messages[:-1])


def evaluate_exact_match(
    model,
    tokenizer: TextTokenizer,
    samples: list[Sample],
    spec: EncodeSpec,
    batch_size: int = 16,
    max_new_tokens: int = 8,
) -> dict:
    """Accuracy per task (sample.meta['task']) and overall; answers compared after strip()."""
    encoder = SampleEncoder(tokenizer, dataclasses.replace(spec, add_generation_prompt=True))
    eos = tokenizer.special_tokens.im_end
    patch = model.cfg.vision.patch_size
    hits, totals, examples = collections.Counter(), collections.Counter(), []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        encoded = [encoder(prompt_of(s)) for s in chunk]
        lengths = np.array([e.num_tokens for e in encoded], np.int32)
        ids = np.full((len(chunk), int(lengths.max())), tokenizer.special_tokens.pad, np.int32)
        for row, e in enumerate(encoded):
            ids[row, : e.num_tokens] = e.ids
        images = pack_images([[im.pixel_values for im in e.images] for e in encoded], patch)
        out = np.asarray(
            greedy_generate(
                model, ids, images, max_new_tokens=max_new_tokens, prompt_lengths=lengths
            )
        )
        for sample, row in zip(chunk, out, strict=True):
            row = row.tolist()
            text = tokenizer.decode(
                row[: row.index(eos)] if eos in row else row, skip_special_tokens=True
            ).strip()
            task, answer = sample.meta.get("task", "all"), str(sample.meta["answer"]).strip()
            totals[task] += 1
            hits[task] += int(text == answer)
            if len(examples) < 8:
                examples.append({"task": task, "answer": answer, "prediction": text})
    per_task = {t: hits[t] / totals[t] for t in sorted(totals)}
    return {
        "accuracy": sum(hits.values()) / max(1, sum(totals.values())),
        "per_task": per_task,
        "counts": dict(totals),
        "examples": examples,
    }
