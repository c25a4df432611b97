"""Streaming packer as a grain IterDataset with exact, tiny, JSON checkpoints.

Its parent is a random-access grain MapDataset of Examples (or `Skipped` markers), so the state is
just integers: the next stream index (`cursor`), the indices of examples read but not yet placed
(`pending`: examples that fitted no row and, under `text_fill`, text-only examples held back;
re-fetched by index on restore — the map transforms are seeded per index) and the counters.
Restoring a state therefore reproduces exactly the same next batch. Under `mp_prefetch`, grain
slices the MapDataset parent per worker (`set_slice`) and keeps one such state per worker.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain

from andesvl_jax.config import SpecialTokens
from andesvl_jax.data.batch import TrainBatch
from andesvl_jax.data.errors import DataError, Skipped, SkipStats
from andesvl_jax.data.packing import RowPacker, assemble_batch


@dataclasses.dataclass(frozen=True)
class PackSpec:
    """Batch geometry: batch_size rows of max_tokens tokens and max_patches patches.

    max_misses: examples that fit no row before a batch is closed (they start the next batch).
    close_fill: a batch closes once its rows are this full (the binding budget, mean over rows).
    text_fill: fill the rows' token budgets with text-only examples once the patch budget is used
      up: while images fill the patches, up to text_lookahead text-only examples are held back;
      then they (and, reading on, later ones) top up the tokens. For mixtures with text-only data.
    """

    batch_size: int
    max_tokens: int
    max_patches: int
    patch_size: int
    tokens: SpecialTokens
    max_misses: int = 16
    close_fill: float = 0.995
    text_fill: bool = False
    text_lookahead: int = 256


class PackedBatchDataset(grain.IterDataset):
    """MapDataset[Example | Skipped] -> IterDataset[TrainBatch]; num_epochs None = forever."""

    def __init__(self, parent: grain.MapDataset, spec: PackSpec, num_epochs: int | None = 1):
        super().__init__(parent)
        self.spec, self.num_epochs = spec, num_epochs

    def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
        """Called by mp_prefetch: each worker packs its own slice of the examples."""
        del sequential_slice
        self._parents = (self._parent.slice(sl),)

    def __iter__(self) -> PackedBatchIterator:
        return PackedBatchIterator(self._parent, self.spec, self.num_epochs)


class PackedBatchIterator(grain.DatasetIterator):
    """Greedy first-fit over the stream (two phases under text_fill); see PackedBatchDataset."""

    def __init__(self, ds: grain.MapDataset, spec: PackSpec, num_epochs: int | None):
        super().__init__()
        self._ds, self.spec = ds, spec
        self._end = None if num_epochs is None else len(ds) * num_epochs
        self._cursor, self._pending, self._counts = 0, [], SkipStats()
        self._cache: dict[int, Any] = {}  # examples of `pending`, so they are not recomputed

    def _fetch(self, idx: int):
        return self._cache.pop(idx) if idx in self._cache else self._ds[idx]

    def _next_index(self, queue: list[int], pos: list[int]) -> int | None:
        """Pending indices first (pos[0] into queue), then the stream (pos[1] = cursor)."""
        if pos[0] < len(queue):
            pos[0] += 1
            return queue[pos[0] - 1]
        if self._end is None or pos[1] < self._end:
            pos[1] += 1
            return pos[1] - 1
        return None

    def _example(self, idx: int, stats: SkipStats):
        """The Example at stream index `idx`, or None for a counted Skipped marker."""
        ex = self._fetch(idx)
        if isinstance(ex, Skipped):
            stats.add_skip(ex)
            return None
        s = self.spec
        if ex.num_tokens > s.max_tokens or ex.num_patches > s.max_patches:
            raise DataError(
                ex.origin,
                "over_budget",
                f"{ex.num_tokens} tokens / {ex.num_patches} patches exceed a row of "
                f"{s.max_tokens} tokens / {s.max_patches} patches",
            )
        return ex

    @staticmethod
    def _count_ok(stats: SkipStats, ex) -> None:
        stats["ok"] += 1
        stats["downscaled_images"] += ex.downscaled

    def _place(self, packer: RowPacker, idx: int, ex, stats: SkipStats, missed: list[int]) -> bool:
        if packer.add(ex):
            self._count_ok(stats, ex)
            return True
        missed.append(idx)
        self._cache[idx] = ex
        return False

    def __next__(self) -> TrainBatch:
        s = self.spec
        packer = RowPacker(s.batch_size, s.max_tokens, s.max_patches)
        stats, queue, pos = SkipStats(self._counts), self._pending, [0, self._cursor]
        held: list[int] = []  # text-only examples kept back for phase 2 (text_fill)
        missed: list[int] = []  # examples that fitted no row: they start the next batch
        # Phase 1: first fit in stream order (pending first). Under text_fill, examples without
        # images (up to text_lookahead of them) are held back so the images fill the patch budget.
        misses = 0
        while (idx := self._next_index(queue, pos)) is not None:
            if (ex := self._example(idx, stats)) is None:
                continue
            if s.text_fill and ex.num_patches == 0 and len(held) < s.text_lookahead:
                held.append(idx)
                self._cache[idx] = ex
                continue
            misses += not self._place(packer, idx, ex, stats, missed)
            if misses >= s.max_misses or packer.fill() >= s.close_fill:
                break
        # Phase 2 (text_fill): the patch budget is used up (or no more images fit); fill each row's
        # remaining token budget with the held text-only examples (row by row, always the largest
        # that still fits), then with later examples (first fit).
        if s.text_fill and packer.token_fill() < s.close_fill:
            cands = [self._cache.pop(i) for i in held]
            for r in range(s.batch_size):
                while (k := packer.best_fit(r, cands)) is not None:
                    packer.add_to(r, cands[k])
                    self._count_ok(stats, cands[k])
                    del held[k], cands[k]
            for i, ex in zip(held, cands, strict=True):
                self._cache[i] = ex
            # Reading on stops once max_misses examples wait for the next batch, which bounds the
            # look-ahead (and the pending list) when the stream is short of text.
            while (
                packer.token_fill() < s.close_fill
                and len(queue) - pos[0] + len(missed) < s.max_misses
                and (idx := self._next_index(queue, pos)) is not None
            ):
                if (ex := self._example(idx, stats)) is not None:
                    self._place(packer, idx, ex, stats, missed)
        # Old pending examples not reached this time stay first in line.
        new_pending = queue[pos[0] :] + held + missed
        if packer.empty:
            self._cursor, self._pending, self._counts = pos[1], new_pending, stats
            raise StopIteration
        tokens = sum(packer.tokens)
        patches = sum(packer.patches)
        stats.update(
            {
                "batches": 1,
                "tokens_used": tokens,
                "tokens_capacity": s.batch_size * s.max_tokens,
                "patches_used": patches,
                "patches_capacity": s.batch_size * s.max_patches,
            }
        )
        self._cursor, self._pending, self._counts = pos[1], new_pending, stats
        return assemble_batch(packer.members, s.max_tokens, s.max_patches, s.tokens, s.patch_size)

    def get_state(self) -> dict[str, Any]:
        return {
            "cursor": self._cursor,
            "pending": list(self._pending),
            "stats": self._counts.to_json(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._cursor, self._pending = int(state["cursor"]), [int(i) for i in state["pending"]]
        self._counts = SkipStats.from_json(state.get("stats"))
        self._cache.clear()
