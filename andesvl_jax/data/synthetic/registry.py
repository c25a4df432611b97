"""Registry of synthetic task generators: name -> fn(rng, ctx) -> Sample.

Every generator is deterministic given its numpy Generator, and writes the facts that make its
answer checkable into `Sample.meta` ('answer', plus task-specific fields and a 'difficulty' label
where a curriculum needs one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from andesvl_jax.data.sample import Message, Sample


@dataclasses.dataclass(frozen=True)
class TaskContext:
    """Image side range (px) the generators draw at, and the long-context tasks' prompt length.

    Small for the CPU demo, larger for benchmarks.
    """

    min_side: int = 56
    max_side: int = 112
    long_context: tuple[int, int] = (384, 1152)  # prompt characters of the lc_* tasks

    def __post_init__(self):
        low, high = self.long_context
        if not 64 <= low <= high:
            raise ValueError(
                f"TaskContext.long_context {self.long_context}: expected (min, max) prompt "
                "characters with 64 <= min <= max"
            )

    def side(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.min_side, self.max_side + 1))


TaskFn = Callable[[np.random.Generator, TaskContext], Sample]
TASKS: dict[str, TaskFn] = {}


def register_task(name: str) -> Callable[[TaskFn], TaskFn]:
    def deco(fn: TaskFn) -> TaskFn:
        if name in TASKS:
            raise ValueError(f"synthetic task {name!r} registered twice")
        TASKS[name] = fn
        return fn

    return deco


def qa(image_or_images, question: str, answer: str, **meta) -> Sample:
    """One-turn VQA sample: the images first, then the question; short answer."""
    images = image_or_images if isinstance(image_or_images, list) else [image_or_images]
    tags = "".join("<image>" for _ in images)
    return Sample(
        [Message("user", f"{tags}\n{question}"), Message("assistant", answer)],
        images,
        meta={"answer": answer, **meta},
    )
