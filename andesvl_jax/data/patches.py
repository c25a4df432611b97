"""Images -> patch vectors in 2x2-contiguous order -> packed NaViT buffers (`PackedImages`).

This is the vision input contract of the model: every image keeps its native patch grid, all
images of one batch row are concatenated into one buffer, and each patch carries the segment
(image) it belongs to and its (row, col) in its own image's grid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PackedImages(NamedTuple):
    """Packed vision input. All fields [batch, max_patches]; patches [batch, max_patches, C*P*P].

    segment_ids: 1-based image index within its batch row, 0 for padding.
    rows, cols: the patch's coordinates in its own image's patch grid.
    grid_h, grid_w: that image's patch-grid size (0 for padding).
    """

    patches: np.ndarray
    segment_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    grid_h: np.ndarray
    grid_w: np.ndarray


def patchify_2x2(
    pixel_values: np.ndarray, patch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patch vectors of one image in 2x2-block order. pixel_values: [C, H, W].

    Returns (patches [h*w, C*P*P] with each vector ordered (channel, y, x), rows [h*w], cols [h*w]).
    Blocks of 2x2 patches are visited row-major; inside a block: top-left, top-right, bottom-left,
    bottom-right — the order the official AndesVL code packs and pixel-shuffles in.
    """
    c, height, width = pixel_values.shape
    p = patch_size
    if height % (2 * p) or width % (2 * p):
        raise ValueError(
            f"image of {height}x{width} px is not a multiple of 2*patch={2 * p} on both sides"
        )
    h, w = height // p, width // p
    x = pixel_values.reshape(c, h // 2, 2, p, w // 2, 2, p).transpose(1, 4, 2, 5, 0, 3, 6)
    patches = x.reshape(h * w, c * p * p)
    k = np.arange(h * w)
    block, within = k // 4, k % 4
    rows = 2 * (block // (w // 2)) + within // 2
    cols = 2 * (block % (w // 2)) + within % 2
    return patches, rows.astype(np.int32), cols.astype(np.int32)


def pack_images(
    batch: list[list[np.ndarray]], patch_size: int, max_patches: int | None = None
) -> PackedImages:
    """Pack each row's images (each [C, H, W]) into one buffer of `max_patches` patches.

    max_patches None: the longest row.
    """
    rows_out = []
    for row_images in batch:
        parts = [patchify_2x2(np.asarray(img, np.float32), patch_size) for img in row_images]
        grids = [(img.shape[1] // patch_size, img.shape[2] // patch_size) for img in row_images]
        rows_out.append((parts, grids))
    lengths = [sum(p[0].shape[0] for p in parts) for parts, _ in rows_out]
    n = max(lengths, default=0) if max_patches is None else max_patches
    n = max(n, 4)
    if max(lengths, default=0) > n:
        raise ValueError(f"a batch row needs {max(lengths)} patches but max_patches is {n}")
    channels = batch[0][0].shape[0] if batch and batch[0] else 3
    dim = channels * patch_size * patch_size
    out = PackedImages(
        patches=np.zeros((len(batch), n, dim), np.float32),
        segment_ids=np.zeros((len(batch), n), np.int32),
        rows=np.zeros((len(batch), n), np.int32),
        cols=np.zeros((len(batch), n), np.int32),
        grid_h=np.zeros((len(batch), n), np.int32),
        grid_w=np.zeros((len(batch), n), np.int32),
    )
    for b, (parts, grids) in enumerate(rows_out):
        start = 0
        for seg, ((patches, r, c), (gh, gw)) in enumerate(zip(parts, grids, strict=True), start=1):
            end = start + patches.shape[0]
            out.patches[b, start:end] = patches
            out.segment_ids[b, start:end] = seg
            out.rows[b, start:end] = r
            out.cols[b, start:end] = c
            out.grid_h[b, start:end] = gh
            out.grid_w[b, start:end] = gw
            start = end
    return out
