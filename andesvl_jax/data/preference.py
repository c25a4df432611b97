"""MPO batches: each preference pair becomes two rows, prompt+chosen (row 2i) and prompt+rejected
(row 2i+1), with answer-only loss masks, so a row's masked log-prob sum is log pi(y|x).

Pairs are not packed with other samples: the MPO loss needs whole-sequence log-probs of exactly
the two responses, and one sequence per row keeps that a plain row sum. A sample gives its pair
through meta["chosen"] / meta["rejected"] (the `preference` JSONL reader and the synthetic
`preference` task both do). The iterator's state is a cursor plus skip counters, so a resumed run
continues with exactly the next pair.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain

from andesvl_jax.data.encode import Example, SampleEncoder
from andesvl_jax.data.errors import DataError, Skipped, SkipStats, apply_policy
from andesvl_jax.data.packing import assemble_batch
from andesvl_jax.data.sample import Message, Sample


def pair_samples(sample: Sample) -> tuple[Sample, Sample]:
    """(prompt + chosen answer, prompt + rejected answer) of a preference sample."""
    for key in ("chosen", "rejected"):
        if not isinstance(sample.meta.get(key), str):
            raise DataError(sample.origin, "not_a_pair", f"meta[{key!r}] missing or not a string")
    return tuple(
        dataclasses.replace(
            sample, messages=[*sample.prompt, Message("assistant", sample.meta[key])]
        )
        for key in ("chosen", "rejected")
    )


class EncodePair:
    """grain map fn: stream index -> (chosen Example, rejected Example) or Skipped."""

    def __init__(self, source, encoder: SampleEncoder, on_error: str):
        self.source, self.encoder, self.on_error = source, encoder, on_error

    def _encode(self, index: int) -> tuple[Example, Example]:
        return tuple(self.encoder(s) for s in pair_samples(self.source[index]))

    def __call__(self, index: int):
        return apply_policy(self.on_error, self._encode, int(index))


class PairBatchDataset(grain.IterDataset):
    """Batches of `pairs` preference pairs (2 * pairs rows) from a MapDataset of encoded pairs."""

    def __init__(
        self,
        pairs_ds: grain.MapDataset,
        pairs: int,
        max_tokens: int,
        max_patches: int,
        tokens,
        patch_size: int,
    ):
        super().__init__()
        self.ds, self.pairs = pairs_ds, pairs
        self.layout = (max_tokens, max_patches, tokens, patch_size)

    def __iter__(self) -> PairBatchIterator:
        return PairBatchIterator(self)


class PairBatchIterator(grain.DatasetIterator):
    def __init__(self, parent: PairBatchDataset):
        super().__init__()
        self.parent, self._cursor, self._counts = parent, 0, SkipStats()

    def __next__(self):
        rows, stats = [], SkipStats(self._counts)
        max_tokens, max_patches, _, _ = self.parent.layout
        while len(rows) < 2 * self.parent.pairs:
            item = self.parent.ds[self._cursor]
            self._cursor += 1
            if isinstance(item, Skipped):
                stats.add_skip(item)
                continue
            for ex in item:
                if ex.num_tokens > max_tokens or ex.num_patches > max_patches:
                    raise DataError(
                        ex.origin,
                        "over_budget",
                        f"{ex.num_tokens} tokens / {ex.num_patches} patches exceed a row of "
                        f"{max_tokens} / {max_patches}",
                    )
            rows += [[item[0]], [item[1]]]
            stats["ok"] += 1
        self._counts = stats
        return assemble_batch(rows, *self.parent.layout)

    def get_state(self) -> dict[str, Any]:
        return {"cursor": self._cursor, "stats": self._counts.to_json()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._cursor = int(state["cursor"])
        self._counts = SkipStats.from_json(state.get("stats"))
