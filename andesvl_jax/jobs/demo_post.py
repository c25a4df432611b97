"""`andesvl-jax demo-post`: MPO and GRPO on the tiny model, from the main demo's SFT checkpoint.

Measures, on held-out synthetic samples (eval split, seed 4321), what each stage is meant to move,
before and after: MPO -> preference accuracy (log pi(chosen) > log pi(rejected)) on counting
answers; GRPO -> mean exact-answer reward of greedy completions on math-in-image prompts
(`math_digits`, the variant the tiny model can read; the sentence task `math` and `count` are
reported too). GRPO's recipe is two stages: `grpo_warmup` (a short SFT on math_digits, so the
policy's pass rate is not ~0) then `grpo` from it; the GRPO gain is grpo over grpo_warmup.
Configs: experiments/tiny.py:stage=mpo|grpo_warmup|grpo. Results: WORKDIR/post_training_results.json.
"""

from __future__ import annotations

import json
import pathlib
import time

from andesvl_jax.data.atomic_io import atomic_write_text

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "tiny.py"
EVAL_SEED = 4321  # held-out: eval split, a seed no training config uses
EXACT = {"exact_answer": 1.0}
STARTS_FROM = {"mpo": "sft", "grpo_warmup": "sft", "grpo": "grpo_warmup"}
# (label, results key, field, the stage meant to move it)
ROWS = [
    ("preference accuracy", "preference", "accuracy", "mpo"),
    ("preference margin (nats)", "preference", "mean_margin", "mpo"),
    ("math-in-image reward", "math_digits_reward", "mean_reward", "grpo"),
    ("  sentence math reward", "math_reward", "mean_reward", "-"),
    ("count reward (exact)", "count_reward", "mean_reward", "-"),
]


def _held_out(task: str, n: int, data) -> list:
    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext

    ctx = TaskContext(data.min_side, data.max_side)
    src = SyntheticSource({task: 1.0}, size=n, seed=EVAL_SEED, split="eval", ctx=ctx)
    return [src[i] for i in range(n)]


def measure(run: pathlib.Path, n: int) -> dict:
    """Preference accuracy and greedy rewards of the model trained in `run`."""
    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.eval.post_training import mean_reward, preference_accuracy
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model

    start = time.perf_counter()
    data = load_run_config(run).data
    model, tok = load_model(run)
    size = data.image_max_size
    engine = Engine(model, tok, image_max_size=size, max_prompt_tokens=128, max_patches=64)
    engine.batch_size = 50
    pairs = _held_out("preference", n, data)
    out = {
        "preference": preference_accuracy(
            model, tok, pairs, image_max_size=size, max_tokens=128, max_patches=64
        ),
        "count_reward": mean_reward(engine, _held_out("count", n, data), EXACT),
        "math_reward": mean_reward(engine, _held_out("math", n, data), EXACT),
        "math_digits_reward": mean_reward(engine, _held_out("math_digits", n, data), EXACT),
    }
    out["eval_seconds"] = time.perf_counter() - start
    return out


def train_stage(stage: str, workdir: pathlib.Path, steps_scale: float) -> dict:
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train

    start_from = workdir / STARTS_FROM[stage]
    if not (start_from / "checkpoints").is_dir():
        raise SystemExit(
            f"{start_from}: no checkpoint for stage {stage} to start from; run its stage first "
            f"(e.g. --stages grpo_warmup,grpo)"
        )
    config = load_config(f"{EXPERIMENT}:stage={stage}", [])
    config.steps = max(1, int(config.steps * steps_scale))
    config.init.from_stage_workdir = str(start_from)
    start = time.perf_counter()
    summary = train(config, workdir / stage)
    summary["seconds"] = time.perf_counter() - start
    return summary


def _downstream(stage: str) -> list[str]:
    """Stages that start (directly or not) from `stage`'s checkpoint."""
    direct = [s for s, start in STARTS_FROM.items() if start == stage]
    return direct + [later for s in direct for later in _downstream(s)]


def _cell(measured: dict, key: str, field: str) -> str:
    value = measured.get(key, {}).get(field)  # absent in results files of older versions
    return f"{value:9.3f}" if value is not None else f"{'-':>9s}"


def run(args) -> int:
    workdir = pathlib.Path(args.workdir)
    if not (workdir / "sft" / "checkpoints").is_dir():
        raise SystemExit(f"{workdir / 'sft'}: no SFT checkpoint; run `make demo` first")
    stages = args.stages.split(",")
    unknown = sorted(set(stages) - set(STARTS_FROM))
    if unknown:
        raise SystemExit(f"--stages: unknown {unknown}; choose from {sorted(STARTS_FROM)}")
    out = workdir / "post_training_results.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["before"] = measure(workdir / "sft", args.eval_samples)
    for stage in stages:
        results[f"{stage}_training"] = train_stage(stage, workdir, args.steps_scale)
        results[stage] = measure(workdir / stage, args.eval_samples)
        for later in _downstream(stage):  # measured from a checkpoint that no longer exists
            if later not in stages:
                results.pop(later, None)
                results.pop(f"{later}_training", None)
    columns = ["before"] + [s for s in STARTS_FROM if s in results]
    names = {"before": "SFT", "grpo_warmup": "warm-up"}
    print(f"\n{'held-out metric (n=' + str(args.eval_samples) + ')':28s}", end="")
    print("".join(f"{names.get(c, c):>9s}" for c in columns), "  moved by")
    for label, key, field, stage in ROWS:
        cells = "".join(_cell(results[c], key, field) for c in columns)
        print(f"{label:28s}{cells}   {stage}")
    for stage in stages:
        s = results[f"{stage}_training"]
        print(f"[{stage}] {s['steps']} steps in {s['seconds']:.0f} s (from {STARTS_FROM[stage]})")
    atomic_write_text(out, json.dumps(results, indent=2, default=str))
    print(f"results: {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo-post", help="MPO and GRPO on the demo's SFT checkpoint")
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--eval-samples", type=int, default=400)
    p.add_argument("--steps-scale", type=float, default=1.0)
    p.add_argument(
        "--stages",
        default="mpo,grpo_warmup,grpo",
        help="which of mpo, grpo_warmup, grpo to (re)run, in order (grpo starts from grpo_warmup)",
    )
    p.set_defaults(func=run)
