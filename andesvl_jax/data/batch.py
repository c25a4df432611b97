"""`TrainBatch`: what one training step consumes (numpy arrays; the trainer device_puts them).

Pairing rule with the vision input: vision row b holds the images of text row b in placeholder
order; the j-th `<|vision_pad|>` of text row b is replaced by the j-th image token of vision row b
(image tokens = 2x2 patch groups in packed order, pad groups skipped; one patch per token when
pixel shuffle is off).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from andesvl_jax.data.patches import PackedImages


class TrainBatch(NamedTuple):
    """Packed text + vision. Text fields are [B, L]; images is a PackedImages with B rows.

    input_ids: token ids (pad = <|endoftext|>).
    segment_ids: 1-based sample index within the row, 0 = padding.
    positions: token position within its sample (restarts at 0 per sample).
    targets: next-token ids (targets[t] = input_ids[t+1] inside a sample).
    loss_mask: float32, 1 where targets[t] is trained (never images, prompts per stage policy).
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray
    images: PackedImages


def packing_efficiency(batch: TrainBatch) -> dict[str, float]:
    """Non-padding fraction of the token and patch buffers."""
    tok = float((batch.segment_ids > 0).mean()) if batch.segment_ids.size else 0.0
    pat = float((batch.images.segment_ids > 0).mean()) if batch.images.segment_ids.size else 0.0
    return {"token_fill": tok, "patch_fill": pat}
