"""Pack Examples into fixed [B, L] token rows and [B, N] patch rows (`TrainBatch`).

Many samples (and all their images) share a row; a sample is never split, and its images always
land in the same row as its text, in placeholder order (the pairing rule of batch.py).
`RowPacker` is the greedy first-fit assignment the streaming packer (pack_dataset.py) uses;
`assemble_batch` writes the arrays.
"""

from __future__ import annotations

import numpy as np

from andesvl_jax.config import SpecialTokens
from andesvl_jax.data.batch import TrainBatch
from andesvl_jax.data.encode import Example
from andesvl_jax.data.patches import pack_images


class RowPacker:
    """First-fit of examples into `rows` rows with a token and a patch budget each."""

    def __init__(self, rows: int, max_tokens: int, max_patches: int):
        self.max_tokens, self.max_patches = max_tokens, max_patches
        self.tokens = [0] * rows
        self.patches = [0] * rows
        self.members: list[list[Example]] = [[] for _ in range(rows)]

    def fits_empty(self, ex: Example) -> bool:
        return ex.num_tokens <= self.max_tokens and ex.num_patches <= self.max_patches

    def fits(self, r: int, ex: Example) -> bool:
        return (
            self.tokens[r] + ex.num_tokens <= self.max_tokens
            and self.patches[r] + ex.num_patches <= self.max_patches
        )

    def add_to(self, r: int, ex: Example) -> None:
        self.tokens[r] += ex.num_tokens
        self.patches[r] += ex.num_patches
        self.members[r].append(ex)

    def add(self, ex: Example) -> bool:
        """Place `ex` in the first row with room for both its tokens and patches; False if none."""
        for r in range(len(self.tokens)):
            if self.fits(r, ex):
                self.add_to(r, ex)
                return True
        return False

    def best_fit(self, r: int, candidates: list[Example]) -> int | None:
        """Index of the candidate with the most tokens that still fits row r (first on ties)."""
        best = None
        for i, ex in enumerate(candidates):
            if self.fits(r, ex) and (best is None or ex.num_tokens > candidates[best].num_tokens):
                best = i
        return best

    def fill(self) -> float:
        """Fraction of the binding budget used, averaged over rows."""
        return float(
            np.mean(
                [
                    max(t / self.max_tokens, p / self.max_patches)
                    for t, p in zip(self.tokens, self.patches, strict=True)
                ]
            )
        )

    def token_fill(self) -> float:
        """Fraction of the token budget used, over all rows."""
        return sum(self.tokens) / (len(self.tokens) * self.max_tokens)

    @property
    def empty(self) -> bool:
        return not any(self.tokens)


def assemble_batch(
    rows: list[list[Example]],
    max_tokens: int,
    max_patches: int,
    tokens: SpecialTokens,
    patch_size: int,
) -> TrainBatch:
    """Write examples (a list per row) into a TrainBatch of B = len(rows) rows."""
    b = len(rows)
    input_ids = np.full((b, max_tokens), tokens.pad, np.int32)
    targets = np.full((b, max_tokens), tokens.pad, np.int32)
    segment_ids = np.zeros((b, max_tokens), np.int32)
    positions = np.zeros((b, max_tokens), np.int32)
    loss_mask = np.zeros((b, max_tokens), np.float32)
    for r, members in enumerate(rows):
        start = 0
        for seg, ex in enumerate(members, start=1):
            n = ex.num_tokens
            sl = slice(start, start + n)
            input_ids[r, sl] = ex.ids
            segment_ids[r, sl] = seg
            positions[r, sl] = np.arange(n)
            # Position t predicts token t+1 of the same sample; the last token predicts nothing.
            targets[r, start : start + n - 1] = ex.ids[1:]
            loss_mask[r, start : start + n - 1] = ex.trainable[1:]
            start += n
    images = pack_images(
        [[im.pixel_values for ex in members for im in ex.images] for members in rows],
        patch_size,
        max_patches,
    )
    return TrainBatch(input_ids, segment_ids, positions, targets, loss_mask, images)


def pack_examples(
    examples: list[Example],
    batch_size: int,
    max_tokens: int,
    max_patches: int,
    tokens: SpecialTokens,
    patch_size: int,
) -> list[TrainBatch]:
    """Offline helper: first-fit a finite list of examples into as many batches as needed."""
    batches, packer = [], RowPacker(batch_size, max_tokens, max_patches)
    for ex in examples:
        if not packer.fits_empty(ex):
            raise ValueError(
                f"{ex.origin}: {ex.num_tokens} tokens / {ex.num_patches} patches exceed one row"
            )
        if not packer.add(ex):
            batches.append(
                assemble_batch(packer.members, max_tokens, max_patches, tokens, patch_size)
            )
            packer = RowPacker(batch_size, max_tokens, max_patches)
            packer.add(ex)
    if not packer.empty:
        batches.append(assemble_batch(packer.members, max_tokens, max_patches, tokens, patch_size))
    return batches
