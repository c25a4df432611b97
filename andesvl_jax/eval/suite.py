"""The held-out synthetic benchmark suite: one benchmark per AndesVL domain, plus variants.

Every benchmark in SYNTHETIC_BENCHMARKS draws `n` samples from `SyntheticSource(tasks,
seed=..., split="eval", ctx=...)`. The eval split seeds numpy with `[seed, 1, index]` where training
uses `[seed, 0, index]` (corpus.SPLITS), so no benchmark sample comes from a training stream,
whatever the seeds; the seeds are fixed (the suite is the same on every machine) and differ from the
ones training configs use (0) and the demo's held-out check (1234). Disjoint streams do not make
disjoint content: tasks with a small content space (math, ocr_digits/latin/cjk, colour) repeat
samples a long training run also drew (docs/evaluation.md, "Held out"). Variants draw at resolutions
and aspect ratios outside the training range (56-112 px sides): `general_large` at 224-448 px, and
`general_extreme_aspect` padded to 4:1 and 1:4.

Each sample's meta is what its metric reads (eval/metrics/): 'answer', 'metric', 'benchmark',
'index', 'domain', 'category' (the task, or the POPE-style probe), and per task 'box' (0-1000
numbers) or 'options'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from andesvl_jax.data.boxes import parse_box
from andesvl_jax.data.errors import SkipStats
from andesvl_jax.data.sample import Sample
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.eval.metrics import METRICS
from andesvl_jax.eval.readers.base import BenchmarkSet

# AndesVL's evaluation domains (DESIGN.md section 9), in report order.
DOMAINS = ("math", "text-rich", "multi-image", "general", "hallucination", "multilingual", "GUI")

# Real benchmark name prefixes (case-insensitive, longest wins) -> domain, for reports of user files.
DOMAIN_PREFIXES: dict[str, str] = {
    **dict.fromkeys(
        ["MathVista", "MathVerse", "MathVision", "WeMath", "DynaMath", "LogicVista", "MMMU"], "math"
    ),
    **dict.fromkeys(
        ["ChartQA", "DocVQA", "InfoVQA", "TextVQA", "OCRBench", "AI2D", "SEEDBench2_Plus"],
        "text-rich",
    ),
    **dict.fromkeys(["BLINK", "MUIRBench", "MMIU", "MIRB", "Mantis"], "multi-image"),
    **dict.fromkeys(
        ["MME", "MMBench", "MMStar", "RealWorldQA", "MMVet", "SEEDBench", "ScienceQA", "VQAv2"],
        "general",
    ),
    **dict.fromkeys(["POPE", "HallusionBench", "CRPE"], "hallucination"),
    **dict.fromkeys(["MMMB", "MTVQA", "MMBench_multilingual"], "multilingual"),
    **dict.fromkeys(["ScreenSpot", "AndesUI"], "GUI"),
}

TRAIN_CONTEXT = TaskContext()  # 56-112 px: what the synthetic training configs draw at
LARGE_CONTEXT = TaskContext(224, 448)  # 2-4x the training maximum side
EXTREME_ASPECTS = (4.0, 0.25)  # width / height, alternating by sample index
# Tasks whose answers or prompts hold box coordinates: padding the image would move them.
BOX_TASKS = frozenset({"gui_grounding", "gui_qa", "gui_referring"})


def domain_of(name: str) -> str | None:
    """The AndesVL domain of a real benchmark name (longest matching prefix), or None."""
    hits = [p for p in DOMAIN_PREFIXES if name.lower().startswith(p.lower())]
    return DOMAIN_PREFIXES[max(hits, key=len)] if hits else None


# ---- meta adapters: synthetic task facts -> the keys the benchmark's metric reads ----


def _box_numbers(meta: dict[str, Any]) -> None:
    # The GUI generators store the box as its answer text; `grounding` wants four numbers.
    meta["box_text"] = meta["box"]
    meta["box"] = list(parse_box(meta["box"]))


def _first_second_options(meta: dict[str, Any]) -> None:
    meta["options"] = {"A": "first", "B": "second"}


def _probe_category(meta: dict[str, Any]) -> None:
    meta["category"] = meta["probe"]  # POPE-style breakdown: object present vs absent


TASK_META: dict[str, Callable[[dict[str, Any]], None]] = {
    "gui_grounding": _box_numbers,
    "gui_qa": _box_numbers,
    "multi_image": _first_second_options,
    "hallucination": _probe_category,
}


# ---- extreme aspect ratios ----


def _border_colour(image: Image.Image) -> tuple[int, ...]:
    """The most common colour on the image border (the canvas background)."""
    a = np.asarray(image.convert("RGB"))
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    colours, counts = np.unique(border, axis=0, return_counts=True)
    return tuple(int(c) for c in colours[counts.argmax()])


def pad_to_aspect(image: Image.Image, aspect: float) -> Image.Image:
    """Pad `image` (centred, with its background colour) to width / height = `aspect`.

    Padding, not resizing: shapes, counts, colours and left/right relations stay as drawn.
    """
    w, h = image.size
    new_w, new_h = max(w, round(h * aspect)), max(h, round(w / aspect))
    canvas = Image.new("RGB", (new_w, new_h), _border_colour(image))
    canvas.paste(image.convert("RGB"), ((new_w - w) // 2, (new_h - h) // 2))
    return canvas


# ---- the registry ----


@dataclasses.dataclass(frozen=True)
class SyntheticBenchmark:
    """One held-out benchmark: synthetic tasks scored by one metric, at a fixed eval seed.

    tasks: {synthetic task: weight}; metric: a METRICS key; ctx: the image side range;
    aspects: if set, every image is padded to aspects[index % len(aspects)] (width / height).
    """

    name: str
    domain: str
    tasks: Mapping[str, float]
    metric: str
    seed: int
    ctx: TaskContext = TRAIN_CONTEXT
    n: int = 200
    aspects: tuple[float, ...] | None = None
    about: str = ""

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"{self.name}: domain {self.domain!r} not one of {DOMAINS}")
        if self.metric not in METRICS:
            raise ValueError(f"{self.name}: metric {self.metric!r} not one of {sorted(METRICS)}")
        if self.aspects and BOX_TASKS & set(self.tasks):
            raise ValueError(f"{self.name}: padding would move the boxes of {sorted(BOX_TASKS)}")

    def source(self, n: int | None = None) -> SyntheticSource:
        return SyntheticSource(
            dict(self.tasks), size=n or self.n, seed=self.seed, split="eval", ctx=self.ctx
        )

    def sample(self, index: int, source: SyntheticSource | None = None) -> Sample:
        """The index-th sample, its meta ready for the metric."""
        sample = (source or self.source())[index]
        task = sample.meta["task"]
        if self.aspects:
            aspect = self.aspects[index % len(self.aspects)]
            sample.images = [pad_to_aspect(im, aspect) for im in sample.images]
        sample.meta.update(
            benchmark=self.name, index=index, domain=self.domain, metric=self.metric, category=task
        )
        TASK_META.get(task, lambda meta: None)(sample.meta)
        return sample

    def build(self, n: int | None = None) -> BenchmarkSet:
        """The first `n` (default self.n) samples as a BenchmarkSet (synthetic: nothing skipped)."""
        n = self.n if n is None else min(n, self.n)
        source = self.source()
        samples = [self.sample(i, source) for i in range(n)]
        return BenchmarkSet(self.name, f"synthetic:{self.name}", samples, SkipStats(ok=n))


def _bench(name, domain, tasks, metric, seed, about, **kw) -> SyntheticBenchmark:
    return SyntheticBenchmark(name, domain, tasks, metric, seed, about=about, **kw)


GENERAL_TASKS = {"count": 1.0, "colour": 1.0, "spatial": 1.0}

SYNTHETIC_BENCHMARKS: dict[str, SyntheticBenchmark] = {
    b.name: b
    for b in [
        _bench("math", "math", {"math": 1.0}, "vqa_accuracy", 9101,
               "word problems rendered in the image; integer answer, exact match"),
        _bench("text_rich", "text-rich", {"ocr_digits": 1.0, "ocr_latin": 1.0, "chart": 1.0},
               "anls", 9102, "reading digits and words, chart values (DocVQA-style ANLS)"),
        _bench("multi_image", "multi-image", {"multi_image": 1.0}, "multiple_choice", 9103,
               "which of two images has more shapes: first (A) or second (B)"),
        _bench("general", "general", GENERAL_TASKS, "vqa_accuracy", 9104,
               "counting, colour and left/right questions over shape scenes"),
        _bench("hallucination", "hallucination", {"hallucination": 1.0}, "pope", 9105,
               "POPE-style yes/no object probes; categories present / absent"),
        _bench("multilingual", "multilingual", {"ocr_cjk": 1.0}, "anls", 9106,
               "reading Chinese numerals (stroke-drawn glyphs)"),
        _bench("gui", "GUI", {"gui_grounding": 1.0, "gui_qa": 1.0}, "grounding", 9107,
               "AndesUI-style grounding and tap QA on phone screens; box centre in target"),
        _bench("gui_referring", "GUI", {"gui_referring": 1.0}, "andesui_referring", 9108,
               "AndesUI-style referring (box -> element); longest common substring rule"),
        _bench("general_large", "general", GENERAL_TASKS, "vqa_accuracy", 9109,
               "as general, at 224-448 px sides (2-4x the training maximum)", ctx=LARGE_CONTEXT),
        _bench("general_extreme_aspect", "general", GENERAL_TASKS, "vqa_accuracy", 9110,
               "as general, padded to 4:1 and 1:4 (alternating)", aspects=EXTREME_ASPECTS),
    ]
}  # fmt: skip


def synthetic_benchmark(name: str, n: int | None = None) -> BenchmarkSet:
    """Build one registered synthetic benchmark (its first `n` samples)."""
    if name not in SYNTHETIC_BENCHMARKS:
        raise KeyError(
            f"synthetic benchmark {name!r} unknown; expected one of {sorted(SYNTHETIC_BENCHMARKS)}"
        )
    return SYNTHETIC_BENCHMARKS[name].build(n)


def synthetic_suite(names=None, n: int | None = None) -> dict[str, BenchmarkSet]:
    """Build several (default: all) registered synthetic benchmarks, in registry order."""
    return {name: synthetic_benchmark(name, n) for name in (names or SYNTHETIC_BENCHMARKS)}
