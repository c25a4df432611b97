"""`andesvl-jax demo`: the main job, tiny and on CPU.

Trains the tiny AndesVL through align -> joint -> multitask -> sft on the embedded synthetic corpus
(each stage starts from the previous stage's checkpoint; configs in experiments/tiny.py), then
evaluates exact match on held-out synthetic questions (counting, colour, reading digits) by greedy
decoding and prints a table next to the chance level. Results go to WORKDIR/demo_results.json.
"""

from __future__ import annotations

import collections
import json
import pathlib
import resource
import time

from andesvl_jax.config import PRESETS, PUBLISHED_PARAMS
from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.data.synthetic.tasks_scene import COLOUR_NAMES
from andesvl_jax.models.params import count_params

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "tiny.py"

STAGE_ORDER = ("align", "joint", "multitask", "sft")
# Chance of a uniform guess over each task's answer set (see data/synthetic/tasks_scene.py).
CHANCE = {
    "count": 1 / 6,
    "colour": 1 / len(COLOUR_NAMES),
    "ocr_digits": 1 / 10,
}  # ocr: a 1-digit guess


def run_stages(workdir: pathlib.Path, steps_scale: float) -> list[dict]:
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train

    summaries, previous = [], None  # align starts from random weights
    for stage in STAGE_ORDER:
        config = load_config(f"{EXPERIMENT}:stage={stage}", [])
        config.steps = max(1, int(config.steps * steps_scale))
        config.init.from_stage_workdir = previous
        start = time.perf_counter()
        summary = train(config, workdir / stage)
        summary["seconds"] = time.perf_counter() - start
        summaries.append(summary)
        previous = str(workdir / stage)
        loss = (
            "resumed, already finished"
            if summary["final_loss"] is None
            else f"{summary['final_loss']:.3f}"
        )
        print(f"[{stage}] {summary['steps']} steps, final loss {loss}, {summary['seconds']:.0f} s")
    return summaries


def held_out(data, n: int) -> list:
    """The demo's held-out questions: eval split, a seed no training run uses."""
    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext

    ctx = TaskContext(data.min_side, data.max_side)
    source = SyntheticSource(dict(data.mixture), size=n, seed=1234, split="eval", ctx=ctx)
    return [source[i] for i in range(n)]


def evaluate(workdir: pathlib.Path, n: int) -> dict:
    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.eval.metrics import evaluate_exact_match
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model

    final = workdir / STAGE_ORDER[-1]
    d = load_run_config(final).data
    model, tokenizer = load_model(final)
    engine = Engine(
        model,
        tokenizer,
        image_max_size=d.image_max_size,
        max_prompt_tokens=d.max_tokens,
        max_patches=d.max_patches,
        batch_size=50,
    )
    return evaluate_exact_match(engine, held_out(d, n))


def training_overlap(workdir: pathlib.Path, n: int, correct: list[bool]) -> dict:
    """Held-out questions that the training stream also contains verbatim, and the accuracy on
    the others."""
    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
    from andesvl_jax.eval.contamination import seen_in_training

    config = load_run_config(workdir / STAGE_ORDER[-1])
    d = config.data
    samples = held_out(d, n)
    ctx = TaskContext(d.min_side, d.max_side)
    train = SyntheticSource(dict(d.mixture), size=d.size, seed=config.seed, split="train", ctx=ctx)
    seen = seen_in_training(samples, train)
    unseen = [c for c, hit in zip(correct, seen, strict=True) if not hit]
    return {
        "seen_in_training": int(sum(seen)),
        "per_task_seen": dict(
            collections.Counter(s.meta["task"] for s, hit in zip(samples, seen, strict=True) if hit)
        ),
        "unseen": len(unseen),
        "unseen_accuracy": sum(unseen) / max(1, len(unseen)),
    }


def run(args) -> int:
    workdir = pathlib.Path(args.workdir)
    start = time.perf_counter()
    summaries = run_stages(workdir, args.steps_scale)
    results = evaluate(workdir, args.eval_samples)
    elapsed = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"\nHeld-out synthetic evaluation (exact match, {sum(results['counts'].values())} questions)"
    )
    print(f"{'task':12s} {'n':>5s} {'accuracy':>9s} {'chance':>7s}")
    for task, acc in results["per_task"].items():
        print(
            f"{task:12s} {results['counts'][task]:5d} {acc:9.1%} {CHANCE.get(task, float('nan')):7.1%}"
        )
    print(f"{'all':12s} {sum(results['counts'].values()):5d} {results['accuracy']:9.1%}")
    print(f"\ntotal {elapsed / 60:.1f} min, peak memory {peak_gib:.2f} GiB")
    if args.check_overlap:
        overlap = results["overlap"] = training_overlap(
            workdir, args.eval_samples, results["correct"]
        )
        print(
            f"held-out questions also in the training stream: {overlap['seen_in_training']} "
            f"{overlap['per_task_seen']}; accuracy on the other {overlap['unseen']}: "
            f"{overlap['unseen_accuracy']:.1%}"
        )
    print(
        f"\n{'preset':8s} {'vision':>12s} {'projector':>12s} {'llm':>14s} {'total':>14s} {'published':>10s}"
    )
    for name in PRESETS:
        c = count_params(PRESETS[name])
        pub = f"{PUBLISHED_PARAMS[name] / 1e9:.3f} B" if name in PUBLISHED_PARAMS else "-"
        print(
            f"{name:8s} {c['vision']:12,d} {c['projector']:12,d} {c['llm']:14,d} {c['total']:14,d} {pub:>10s}"
        )
    atomic_write_text(
        workdir / "demo_results.json",
        json.dumps(
            {
                "stages": summaries,
                "eval": results,
                "minutes": elapsed / 60,
                "peak_memory_gib": peak_gib,
            },
            indent=2,
            default=str,
        ),
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="train the tiny model through every stage on synthetic data, evaluate"
    )
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument(
        "--steps-scale", type=float, default=1.0, help="multiply every stage's step count"
    )
    p.add_argument("--eval-samples", type=int, default=300)
    p.add_argument(
        "--check-overlap",
        action="store_true",
        help="also find held-out questions that occur verbatim in the training stream (~2 min)",
    )
    p.set_defaults(func=run)
