"""The embedded synthetic corpus: random-access `Sample`s, deterministic by (seed, split, index).

Mixtures (a registry) weight the task generators; the train and eval splits draw from disjoint
seed streams. No files are read: every image is rendered on access.
"""

from __future__ import annotations

import numpy as np

# Importing the task modules registers their generators.
from andesvl_jax.data.synthetic import tasks_gui, tasks_long, tasks_scene, tasks_text  # noqa: F401
from andesvl_jax.data.synthetic.registry import TASKS, TaskContext

SPLITS = {"train": 0, "eval": 1}
DEFAULT_CONTEXT = TaskContext()

MIXTURES: dict[str, dict[str, float]] = {
    # What the CPU demo trains on: short, learnable answers (counting, colour, reading digits).
    "demo": {"count": 1.0, "colour": 1.0, "ocr_digits": 1.0},
    "align": {
        "caption": 2.0,
        "ocr_latin": 1.0,
        "ocr_cjk": 1.0,
        "ocr_digits": 1.0,
        "count": 1.0,
        "colour": 1.0,
    },
    # joint and multitask mix in text-only data (as AndesVL's joint stage does). The text-only
    # weight is sized so that, at 112-448 px images and the embedded character vocabulary, the
    # stream carries about 2 text tokens per image patch: what 8192-token / 4096-patch rows hold.
    "joint": {
        "interleaved": 2.0,
        "text_arith": 1.0,
        "caption": 1.0,
        "count": 1.0,
        "chart": 1.0,
        "ocr_latin": 1.0,
        "text_document": 8.0,
    },
    "multitask": {
        "count": 1.0,
        "colour": 1.0,
        "spatial": 1.0,
        "chart": 1.0,
        "ocr_latin": 1.0,
        "ocr_cjk": 1.0,
        "gui_grounding": 1.0,
        "gui_referring": 1.0,
        "gui_qa": 1.0,
        "math": 1.0,
        "multi_image": 1.0,
        "hallucination": 1.0,
        "text_reading": 16.0,
    },
    # RULER-style long-context text tasks (tasks_long.py), what the KV-eviction model trains on
    "long_context": {f"lc_{t}": 1.0 for t in tasks_long.LONG_TASKS},
    "gui": {"gui_grounding": 1.0, "gui_referring": 1.0, "gui_qa": 1.0},
    "mpo": {"preference": 1.0},
    "grpo": {"math": 1.0},
    "all": {name: 1.0 for name in TASKS},
}


class SyntheticSource:
    """grain-compatible random-access source. source[i] -> Sample, for 0 <= i < size.

    mixture: a MIXTURES name or an explicit {task: weight} dict.
    """

    def __init__(
        self,
        mixture: str | dict[str, float] = "demo",
        size: int = 100_000,
        seed: int = 0,
        split: str = "train",
        ctx: TaskContext = DEFAULT_CONTEXT,
    ):
        weights = MIXTURES[mixture] if isinstance(mixture, str) else dict(mixture)
        unknown = sorted(set(weights) - set(TASKS))
        if unknown:
            raise KeyError(f"unknown synthetic tasks {unknown}; known: {sorted(TASKS)}")
        if split not in SPLITS:
            raise KeyError(f"split {split!r} unknown; expected one of {sorted(SPLITS)}")
        self.names = sorted(weights)
        p = np.asarray([weights[n] for n in self.names], np.float64)
        self.probs = p / p.sum()
        self.size, self.seed, self.split, self.ctx = size, seed, split, ctx

    def __len__(self) -> int:
        return self.size

    def _draw(self, index: int) -> tuple[np.random.Generator, str]:
        rng = np.random.default_rng([self.seed, SPLITS[self.split], int(index) % self.size])
        return rng, self.names[int(rng.choice(len(self.names), p=self.probs))]

    def task_of(self, index: int) -> str:
        """The task of sample `index`, without generating it."""
        return self._draw(index)[1]

    def __getitem__(self, index: int):
        index = int(index) % self.size
        rng, task = self._draw(index)
        sample = TASKS[task](rng, self.ctx)
        sample.origin = f"synthetic:{self.split}:{task}:{index}"
        sample.meta["task"] = task
        return sample

    def __repr__(self) -> str:
        return (
            f"SyntheticSource(tasks={self.names}, size={self.size}, seed={self.seed}, "
            f"split={self.split})"
        )
