"""`andesvl-jax demo-post`: MPO and GRPO on the tiny model, from the main demo's SFT checkpoint.

Measures, on held-out synthetic samples, what each stage is meant to move, before and after:
MPO -> preference accuracy (log pi(chosen) > log pi(rejected)) on counting answers; GRPO -> mean
exact-answer reward of greedy completions on counting prompts, and on math-in-image prompts.
Configs: experiments/tiny.py:stage=mpo / stage=grpo. Results: WORKDIR/post_training_results.json.
"""

from __future__ import annotations

import json
import pathlib
import time

EXPERIMENT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "tiny.py"
EVAL_SEED = 4321  # held-out: eval split, a seed no training config uses
EXACT = {"exact_answer": 1.0}


def _held_out(task: str, n: int, data) -> list:
    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext

    ctx = TaskContext(data.min_side, data.max_side)
    src = SyntheticSource({task: 1.0}, size=n, seed=EVAL_SEED, split="eval", ctx=ctx)
    return [src[i] for i in range(n)]


def measure(run: pathlib.Path, n: int) -> dict:
    """Preference accuracy and greedy rewards of the model trained in `run`."""
    from andesvl_jax.eval.post_training import mean_reward, preference_accuracy
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.train.loop import load_run_config

    data = load_run_config(run).data
    model, tok = load_model(run)
    size = data.image_max_size
    engine = Engine(model, tok, image_max_size=size, max_prompt_tokens=128, max_patches=64)
    engine.batch_size = 50
    pairs = _held_out("preference", n, data)
    return {
        "preference": preference_accuracy(
            model, tok, pairs, image_max_size=size, max_tokens=128, max_patches=64
        ),
        "count_reward": mean_reward(engine, _held_out("count", n, data), EXACT),
        "math_reward": mean_reward(engine, _held_out("math", n, data), EXACT),
    }


def train_stage(stage: str, workdir: pathlib.Path, steps_scale: float) -> dict:
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train

    config = load_config(f"{EXPERIMENT}:stage={stage}", [])
    config.steps = max(1, int(config.steps * steps_scale))
    config.init.from_stage_workdir = str(workdir / "sft")
    start = time.perf_counter()
    summary = train(config, workdir / stage)
    summary["seconds"] = time.perf_counter() - start
    return summary


def run(args) -> int:
    workdir = pathlib.Path(args.workdir)
    if not (workdir / "sft" / "checkpoints").is_dir():
        raise SystemExit(f"{workdir / 'sft'}: no SFT checkpoint; run `make demo` first")
    stages = args.stages.split(",")
    out = workdir / "post_training_results.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["before"] = measure(workdir / "sft", args.eval_samples)
    for stage in stages:
        results[f"{stage}_training"] = train_stage(stage, workdir, args.steps_scale)
        results[stage] = measure(workdir / stage, args.eval_samples)
    rows = [
        ("preference accuracy", "preference", "accuracy", "mpo"),
        ("preference margin (nats)", "preference", "mean_margin", "mpo"),
        ("count reward (exact)", "count_reward", "mean_reward", "grpo"),
        ("math-in-image reward", "math_reward", "mean_reward", "grpo"),
    ]
    print(f"\n{'held-out metric':28s} {'SFT':>8s} {'after':>8s}  stage")
    for label, key, field, stage in rows:
        if stage not in results:
            continue
        before, after = results["before"][key][field], results[stage][key][field]
        print(f"{label:28s} {before:8.3f} {after:8.3f}  {stage}")
    for stage in stages:
        s = results[f"{stage}_training"]
        print(f"[{stage}] {s['steps']} steps in {s['seconds']:.0f} s")
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo-post", help="MPO and GRPO on the demo's SFT checkpoint")
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--eval-samples", type=int, default=200)
    p.add_argument("--steps-scale", type=float, default=1.0)
    p.add_argument("--stages", default="mpo,grpo", help="which of mpo,grpo to (re)run")
    p.set_defaults(func=run)
