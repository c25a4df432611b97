"""`andesvl-jax ablate`: 2D-RoPE on/off x pixel shuffle on/off on the tiny preset (docs/ablations.md),
plus 2D-RoPE without the learned absolute position table (a nested config override of the base cell).

Every cell (CELLS) trains once per seed with the same step budget, seed and patch budget
(experiments/ablations.py), then is scored by greedy exact match on the same held-out synthetic
questions under every eval condition (CONDITIONS): the training resolution, 2x and 4x more patches,
4:1 and 1:4 aspect ratios, and train-low / test-high (224-448 px after training at <= 112 px).
Per run, WORKDIR/<cell>-s<seed>/ holds the training workdir,
`train_summary.json` (written when training completed) and `eval.json`; a rerun skips what exists.
WORKDIR/results.json aggregates everything; `--doc` gets the tables and a plot (ablate_report.py),
with per-question paired statistics (ablate_paired.py) and interleaved step timing
(ablate_timing.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time

from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.eval.suite import EXTREME_ASPECTS, TRAIN_CONTEXT, pad_to_aspect

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "ablations.py"
EVAL_SEED = 9201  # eval split; differs from the suite's seeds and the demo's 1234
TRAIN_IMAGE_MAX_SIZE = 112  # experiments/ablations.py data.image_max_size
# One generation budget for every cell and condition, large enough that no image is shrunk (the
# largest, a 448 px test_high scene, is 1024 patches: 1024 tokens at pixel shuffle off).
EVAL_MAX_PATCHES = 1024
EVAL_MAX_TOKENS = 1280
WORD = {True: "on", False: "off"}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One architecture: the 2x2 grid, and (abs_pos False) the learned absolute table removed."""

    rope2d: bool
    shuffle: bool
    abs_pos: bool = True

    @property
    def name(self) -> str:
        name = f"rope2d_{WORD[self.rope2d]}-shuffle_{WORD[self.shuffle]}"
        return name if self.abs_pos else f"{name}-abs_off"

    def config_arg(self, seed: int, steps: int | None = None, tasks: str | None = None) -> str:
        """The experiments/ablations.py argument (None: the experiment's default)."""
        arg = f"rope2d={WORD[self.rope2d]},shuffle={WORD[self.shuffle]},seed={seed}"
        arg += "" if steps is None else f",steps={steps}"
        return arg if tasks is None else f"{arg},tasks={tasks}"

    @property
    def overrides(self) -> list[str]:
        """Nested config overrides beyond the experiment's switches (not a registered preset)."""
        return [] if self.abs_pos else ["--config.model.vision.use_abs_pos=False"]


CELLS: dict[str, Cell] = {
    c.name: c
    for c in [
        *(Cell(r, s) for r in (True, False) for s in (True, False)),
        Cell(True, True, abs_pos=False),  # the extrapolation case: RoPE is the only position
    ]
}
BASELINE = "rope2d_on-shuffle_on"  # the AndesVL architecture; step-time ratios are against it
# Factor -> the Cell field it switches (ablate_report.py estimates each factor's effect over the
# pairs of cells differing in that field only).
FACTORS: dict[str, str] = {
    "2D-RoPE": "rope2d",
    "pixel shuffle": "shuffle",
    "absolute table (RoPE on)": "abs_pos",
}


@dataclasses.dataclass(frozen=True)
class EvalCondition:
    """Held-out questions drawn with image sides x side_scale (training: 56-112 px), preprocessed
    with an area budget of image_max_size**2 px, optionally padded to `aspects` (alternating)."""

    name: str
    side_scale: float
    image_max_size: int
    about: str
    aspects: tuple[float, ...] | None = None

    def context(self) -> TaskContext:
        lo, hi = TRAIN_CONTEXT.min_side, TRAIN_CONTEXT.max_side
        return TaskContext(round(lo * self.side_scale), round(hi * self.side_scale))

    def samples(self, mixture: dict[str, float], n: int) -> list:
        """The first n questions; every condition draws the same questions (same seed)."""
        source = SyntheticSource(mixture, size=n, seed=EVAL_SEED, split="eval", ctx=self.context())
        out = []
        for i in range(n):
            sample = source[i]
            if self.aspects:
                aspect = self.aspects[i % len(self.aspects)]
                sample.images = [pad_to_aspect(im, aspect) for im in sample.images]
            out.append(sample)
        return out


_R2 = math.sqrt(2.0)
CONDITIONS: dict[str, EvalCondition] = {
    c.name: c
    for c in [
        EvalCondition("train_res", 1.0, TRAIN_IMAGE_MAX_SIZE,
                      "training resolution: 56-112 px sides, area budget 112 px"),
        EvalCondition("patches_2x", _R2, round(TRAIN_IMAGE_MAX_SIZE * _R2),
                      "sides x sqrt(2) (79-158 px), area budget 158 px: ~2x the patches"),
        EvalCondition("patches_4x", 2.0, 2 * TRAIN_IMAGE_MAX_SIZE,
                      "sides x 2 (112-224 px), area budget 224 px: ~4x the patches"),
        EvalCondition("aspect_4to1", 1.0, 2 * TRAIN_IMAGE_MAX_SIZE,
                      "training-size images padded to 4:1 (wide); area budget 224 px, so the "
                      "padding does not shrink the content", aspects=(EXTREME_ASPECTS[0],)),
        EvalCondition("aspect_1to4", 1.0, 2 * TRAIN_IMAGE_MAX_SIZE,
                      "training-size images padded to 1:4 (tall); area budget 224 px",
                      aspects=(EXTREME_ASPECTS[1],)),
        EvalCondition("test_high", 4.0, 4 * TRAIN_IMAGE_MAX_SIZE,
                      "train-low / test-high: sides x 4 (224-448 px), area budget 448 px: "
                      "~16x the patches of training (<= 112 px)"),
    ]
}  # fmt: skip


def _csv(value: str, known: dict | None = None, cast=str) -> list:
    items = [cast(v.strip()) for v in value.split(",") if v.strip()]
    if known is not None and (bad := [v for v in items if v not in known]):
        raise SystemExit(f"ablate: unknown {bad}; expected some of {list(known)}")
    return items


# ---- one run: train, then evaluate ----


def step_stats(workdir: pathlib.Path) -> dict:
    """Mean step time and tokens/s from metrics.jsonl, leaving out the first logged window (it
    holds the compile) unless it is the only one."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in rows if "step_time_s" in r]
    steady = windows[1:] or windows
    mean = lambda key: sum(r[key] for r in steady) / len(steady) if steady else None  # noqa: E731
    return {"step_time_s": mean("step_time_s"), "tokens_per_s": mean("tokens_per_s")}


def flops_per_step(config, data: dict) -> float:
    """Model FLOPs of a mean training step (train.telemetry.train_flops over the run's mean packed
    tokens and patches): the step cost without the machine's load in it."""
    from andesvl_jax.configs import model_config
    from andesvl_jax.train.telemetry import train_flops

    steps = max(1, data["batches"])
    return train_flops(
        model_config(config),
        data["tokens_used"] / steps,
        data["patches_used"] / steps,
        config.data.max_tokens,
        config.data.max_patches,
    )


def train_cell(config, run_dir: pathlib.Path) -> dict:
    """Train (or resume, or skip when finished) one run; its summary with step statistics."""
    from andesvl_jax.configs import model_config
    from andesvl_jax.models.params import count_params
    from andesvl_jax.train.loop import train

    done = run_dir / "train_summary.json"
    if done.is_file() and json.loads(done.read_text())["steps"] == config.steps:
        return json.loads(done.read_text())
    start = time.perf_counter()
    summary = train(config, run_dir)
    if summary["stop_reason"] != "completed" or summary["steps"] != config.steps:
        raise SystemExit(
            f"ablate: {run_dir} ended at step {summary['steps']} ({summary['stop_reason']}), "
            f"not {config.steps}; a checkpoint from a longer run? remove the directory"
        )
    data = summary["data"]
    summary.update(
        seconds=time.perf_counter() - start,
        samples_per_step=data["ok"] / max(1, data["batches"]),
        params=count_params(model_config(config))["total"],
        **step_stats(run_dir),
    )
    (run_dir / "eval.json").unlink(missing_ok=True)  # scores of an older model are stale
    atomic_write_text(done, json.dumps(summary, indent=2, default=str))  # never half a marker
    return summary


def evaluate_condition(model, tokenizer, mixture, condition: EvalCondition, n, batch) -> dict:
    """Exact match of one model on one condition's questions, with the image token cost."""
    from andesvl_jax.eval.metrics import evaluate_exact_match
    from andesvl_jax.infer.engine import Engine

    engine = Engine(
        model,
        tokenizer,
        image_max_size=condition.image_max_size,
        max_prompt_tokens=EVAL_MAX_TOKENS,
        max_patches=EVAL_MAX_PATCHES,
        batch_size=batch,
    )
    samples = condition.samples(mixture, n)
    encoded = [engine.encode(s, None) for s in samples]
    images = [im for e in encoded for im in e.images]
    patches = sum(im.num_patches for im in images) / len(images)
    start = time.perf_counter()
    result = evaluate_exact_match(engine, samples)
    result.update(
        seconds=time.perf_counter() - start,
        tasks=[s.meta.get("task", "all") for s in samples],  # per question, for paired statistics
        patches_per_image=patches,
        tokens_per_image=patches / model.cfg.tokens_per_patch_group,
        max_tokens_per_image=max(im.num_patches for im in images)
        / model.cfg.tokens_per_patch_group,
        downscaled=sum(e.downscaled for e in encoded),
    )
    return result


def evaluate_run(run_dir: pathlib.Path, conditions: list[str], n: int, batch: int) -> dict:
    """Every condition's scores for one trained run (cached in eval.json)."""
    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.infer.load import load_model

    path = run_dir / "eval.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if cached.get("eval_samples") != n:
        cached = {"eval_samples": n, "conditions": {}}
    # An entry without per-question tasks predates the paired statistics: evaluate it again.
    todo = [c for c in conditions if "tasks" not in cached["conditions"].get(c, {})]
    if todo:
        mixture = dict(load_run_config(run_dir).data.mixture)
        model, tokenizer = load_model(run_dir)
        for name in todo:
            cached["conditions"][name] = evaluate_condition(
                model, tokenizer, mixture, CONDITIONS[name], n, batch
            )
            atomic_write_text(path, json.dumps(cached, indent=2))
    return cached


def cached_timing(workdir: pathlib.Path, configs: dict, rounds: int) -> dict:
    """Interleaved step times of these cells (WORKDIR/timing.json; a rerun with the same cells,
    configs and rounds reuses it)."""
    import hashlib

    from andesvl_jax.eval.ablate_timing import interleaved_step_times

    path = workdir / "timing.json"
    digest = lambda c: hashlib.sha256(c.to_json_best_effort(sort_keys=True).encode()).hexdigest()  # noqa: E731
    key = {"rounds": rounds, "configs": {n: digest(c) for n, c in sorted(configs.items())}}
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if cached.get("key") != key:
        timing = interleaved_step_times(configs, rounds=rounds, baseline=BASELINE)
        cached = {"key": key, "timing": timing}
        atomic_write_text(path, json.dumps(cached, indent=2))
    return cached["timing"]


# ---- the command ----


def command_line(args) -> str:
    """The exact `andesvl-jax ablate` invocation that reproduces these results."""
    parts = ["andesvl-jax ablate", f"--workdir {args.workdir}", f"--seeds {args.seeds}"]
    parts += [f"--steps {args.steps}"] if args.steps else []
    parts += [f"--eval-samples {args.eval_samples}"]
    parts += [f"--tasks {args.tasks}"] if args.tasks else []
    parts += [f"--timing-rounds {args.timing_rounds}"]
    parts += [f"--cells {args.cells}", f"--conditions {args.conditions}", f"--doc {args.doc}"]
    return " ".join(parts + list(args.overrides))


def run(args) -> int:
    from andesvl_jax.eval.ablate_paired import paired_analysis
    from andesvl_jax.eval.ablate_report import aggregate, write_doc
    from andesvl_jax.train.launch import load_config

    seeds = _csv(args.seeds, cast=int)
    cells, conditions = _csv(args.cells, CELLS), _csv(args.conditions, CONDITIONS)
    workdir = pathlib.Path(args.workdir)
    records, steps, first_configs = [], None, {}
    for seed in seeds:
        for name in cells:
            run_dir = workdir / f"{name}-s{seed}"
            cell = CELLS[name]
            config = load_config(
                f"{EXPERIMENT}:{cell.config_arg(seed, args.steps, args.tasks)}",
                [*cell.overrides, *args.overrides],
            )
            first_configs.setdefault(name, config)
            train_summary, steps = train_cell(config, run_dir), config.steps
            train_summary["flops_per_step"] = flops_per_step(config, train_summary["data"])
            scores = evaluate_run(run_dir, conditions, args.eval_samples, args.batch_size)
            records.append({"cell": name, "seed": seed, "run": run_dir.name,
                            "train": train_summary, "eval": scores["conditions"]})  # fmt: skip
            accs = ", ".join(f"{c} {scores['conditions'][c]['accuracy']:.1%}" for c in conditions)
            print(f"[{run_dir.name}] {train_summary['step_time_s']:.3f} s/step; {accs}", flush=True)
    results = aggregate(records, {c: CELLS[c] for c in cells}, FACTORS, conditions)
    results["paired"] = paired_analysis(records, {c: CELLS[c] for c in cells}, FACTORS, conditions)
    if args.timing_rounds:
        results["timing"] = cached_timing(workdir, first_configs, args.timing_rounds)
    results.update(
        command=command_line(args),
        settings={"steps": steps, "seeds": seeds, "eval_samples": args.eval_samples,
                  "tasks": args.tasks or "experiment default",
                  "eval_seed": EVAL_SEED, "eval_max_patches": EVAL_MAX_PATCHES,
                  "eval_max_tokens": EVAL_MAX_TOKENS},
        conditions={c: CONDITIONS[c].about for c in conditions},
        runs=records,
    )  # fmt: skip
    atomic_write_text(workdir / "results.json", json.dumps(results, indent=2, default=str))
    write_doc(pathlib.Path(args.doc), results)
    print(f"[results in {workdir / 'results.json'}; report in {args.doc}]")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ablate", help="2D-RoPE x pixel-shuffle ablation of the tiny model: train, evaluate, report"
    )
    p.add_argument("--workdir", default="runs/ablations")
    p.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    p.add_argument("--steps", type=int, help="training steps of every run (default: experiment's)")
    p.add_argument("--eval-samples", type=int, default=150, help="questions per eval condition")
    p.add_argument("--cells", default=",".join(CELLS), help="comma-separated subset of the grid")
    p.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset")
    p.add_argument("--batch-size", type=int, default=50, help="prompts per generation call")
    p.add_argument("--tasks", help="experiments/ablations.py task mixture (e.g. position)")
    p.add_argument("--timing-rounds", type=int, default=5,
                   help="rounds of interleaved step timing per cell (0: none)")  # fmt: skip
    p.add_argument("--doc", default="docs/ablations.md", help="report (the plot goes beside it)")
    p.set_defaults(func=run, accepts_overrides=True)
