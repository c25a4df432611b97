"""Scene tasks: captions, counting, colour, spatial relations, hallucination probes, multi-image,
preference pairs and interleaved documents — all over rendered coloured shapes."""

from __future__ import annotations

import numpy as np

from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.synthetic.registry import TaskContext, qa, register_task
from andesvl_jax.data.synthetic.render import (
    COLOURS,
    SHAPES,
    draw_shape,
    grid_cells,
    new_canvas,
    position_word,
)

COLOUR_NAMES = sorted(COLOURS)
SHAPE_NAMES = sorted(SHAPES)
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def scene(rng: np.random.Generator, ctx: TaskContext, objects: list[tuple[str, str]]):
    """Draw (shape, colour) objects in distinct grid cells.

    Returns (image, [(shape, colour, box)]).
    """
    w, h = ctx.side(rng), ctx.side(rng)
    img, d = new_canvas(w, h)
    placed = []
    for (shape, colour), box in zip(objects, grid_cells(w, h, len(objects), rng), strict=True):
        draw_shape(d, shape, box, colour)
        placed.append((shape, colour, box))
    return img, placed


def random_objects(rng, n: int) -> list[tuple[str, str]]:
    return [(str(rng.choice(SHAPE_NAMES)), str(rng.choice(COLOUR_NAMES))) for _ in range(n)]


@register_task("count")
def count_task(rng, ctx):
    shape, colour = str(rng.choice(SHAPE_NAMES)), str(rng.choice(COLOUR_NAMES))
    n = int(rng.integers(1, 7))
    others = [(s, c) for s, c in random_objects(rng, int(rng.integers(0, 3))) if s != shape]
    img, _ = scene(rng, ctx, [(shape, colour)] * n + others)
    return qa(img, f"How many {shape}s are there?", str(n), difficulty="easy" if n <= 3 else "hard")


@register_task("colour")
def colour_task(rng, ctx):
    shape, colour = str(rng.choice(SHAPE_NAMES)), str(rng.choice(COLOUR_NAMES))
    img, _ = scene(rng, ctx, [(shape, colour)])
    return qa(img, f"What colour is the {shape}?", colour, difficulty="easy")


@register_task("caption")
def caption_task(rng, ctx):
    img, placed = scene(rng, ctx, random_objects(rng, int(rng.integers(1, 4))))
    w, h = img.size
    parts = [f"a {c} {s} at the {position_word(b, w, h)}" for s, c, b in placed]
    caption = "The image shows " + ", ".join(parts[:-1])
    caption = (caption + " and " if len(parts) > 1 else caption) + parts[-1] + "."
    return qa(img, "Describe the image.", caption, difficulty="easy" if len(parts) == 1 else "hard")


@register_task("spatial")
def spatial_task(rng, ctx):
    (s1, c1), (s2, c2) = random_objects(rng, 2)
    while (s2, c2) == (s1, c1):
        s2 = str(rng.choice(SHAPE_NAMES))
    img, placed = scene(rng, ctx, [(s1, c1), (s2, c2)])
    b1, b2 = placed[0][2], placed[1][2]
    dx = (b1[0] + b1[2]) - (b2[0] + b2[2])
    if dx == 0:  # same column: ask above/below instead
        ans = "above" if b1[1] < b2[1] else "below"
        q = f"Is the {c1} {s1} above or below the {c2} {s2}?"
    else:
        ans = "left" if dx < 0 else "right"
        q = f"Is the {c1} {s1} left or right of the {c2} {s2}?"
    return qa(img, q, ans, difficulty="hard")


@register_task("hallucination")
def hallucination_task(rng, ctx):
    objs = random_objects(rng, int(rng.integers(1, 4)))
    img, _ = scene(rng, ctx, objs)
    present = bool(rng.integers(2))
    if present:
        s, c = objs[int(rng.integers(len(objs)))]
    else:  # an absent (shape, colour) combination
        absent = [(s, c) for s in SHAPE_NAMES for c in COLOUR_NAMES if (s, c) not in objs]
        s, c = absent[int(rng.integers(len(absent)))]
    return qa(
        img,
        f"Is there a {c} {s} in the image? Answer yes or no.",
        "yes" if present else "no",
        probe="present" if present else "absent",
        difficulty="easy",
    )


@register_task("multi_image")
def multi_image_task(rng, ctx):
    shape = str(rng.choice(SHAPE_NAMES))
    n1, n2 = rng.choice(np.arange(1, 6), size=2, replace=False)
    imgs = [scene(rng, ctx, [(shape, str(rng.choice(COLOUR_NAMES)))] * int(n))[0] for n in (n1, n2)]
    ans = "first" if n1 > n2 else "second"
    return qa(
        imgs,
        f"Which image has more {shape}s, the first or the second?",
        ans,
        counts=[int(n1), int(n2)],
        difficulty="hard",
    )


@register_task("preference")
def preference_task(rng, ctx):
    """Counting question with the right count (chosen) and a near miss (rejected), for MPO.

    Answers are written as the count task writes them, so a model after SFT is judged on what it
    answers, not on the phrasing."""
    s = count_task(rng, ctx)
    n = int(s.meta["answer"])
    wrong = int(rng.choice([k for k in (n - 1, n + 1) if k >= 1]))
    s.meta.update(chosen=str(n), rejected=str(wrong))
    return s


@register_task("interleaved")
def interleaved_task(rng, ctx):
    """A short document alternating text and 2-3 figures, each described after it appears."""
    k = int(rng.integers(2, 4))
    text, images, counts = "A report on shapes.\n", [], []
    for i in range(k):
        shape, colour, n = (
            str(rng.choice(SHAPE_NAMES)),
            str(rng.choice(COLOUR_NAMES)),
            int(rng.integers(1, 5)),
        )
        images.append(scene(rng, ctx, [(shape, colour)] * n)[0])
        counts.append(n)
        plural = "s" if n > 1 else ""
        text += f"Figure {i + 1}: <image>\nFigure {i + 1} shows {n} {colour} {shape}{plural}.\n"
    return Sample([Message("user", text)], images, kind="document", meta={"counts": counts})
