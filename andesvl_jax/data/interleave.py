"""Joint pre-training trick (stage 2): move images before the text, leave a reference behind.

With probability `prob` (per image, seeded), an image is moved to the front of its message and its
original place is replaced by a textual reference to its new index ("[image 2]"), so images that
sit at the end of long sequences still get learned from the text that follows. The images list is
reordered to keep the invariant "k-th tag = images[k]". Assistant messages are left untouched.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from andesvl_jax.data.sample import IMAGE_TAG, Sample

REFERENCE_FORMAT = "[image {index}]"


def move_images_first(sample: Sample, rng: np.random.Generator, prob: float = 0.5) -> Sample:
    """A new Sample with some images moved before their message's text (see module docstring)."""
    if not sample.images or prob <= 0:
        return sample
    new_messages, new_images, k = [], [], 0
    for msg in sample.messages:
        parts = msg.content.split(IMAGE_TAG)
        n = len(parts) - 1
        if n == 0 or msg.role == "assistant":
            new_messages.append(msg)
            new_images += sample.images[k : k + n]
            k += n
            continue
        move = rng.random(n) < prob
        moved = [sample.images[k + i] for i in range(n) if move[i]]
        base = len(
            new_images
        )  # global index (0-based) of this message's first image after the move
        new_images += moved
        text = parts[0]
        for i in range(n):
            if move[i]:
                ref = REFERENCE_FORMAT.format(index=base + int(move[:i].sum()) + 1)
                text += ref + parts[i + 1]
            else:
                text += IMAGE_TAG + parts[i + 1]
        new_images += [sample.images[k + i] for i in range(n) if not move[i]]
        prefix = IMAGE_TAG * len(moved) + ("\n" if moved else "")
        new_messages.append(dataclasses.replace(msg, content=prefix + text))
        k += n
    return dataclasses.replace(sample, messages=new_messages, images=new_images)
