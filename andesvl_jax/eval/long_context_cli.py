"""`andesvl-jax eval-long-context`: every KV-eviction policy at several budgets vs the full cache
on the long-context suite (eval/long_context.py), written as JSON, a markdown table and a plot.

    andesvl-jax eval-long-context --checkpoint runs/long_context --out runs/kv_eval \
        --lengths 1024,2048,4096 --per-cell 8

Each condition's results land in OUT/conditions/<condition>.json (atomically) as it finishes; a
rerun with the same settings skips the conditions already there. OUT/results.json holds the
summary and the goals, OUT/table.md the table, OUT/scores.png the plot.
"""

from __future__ import annotations

import json
import pathlib
import sys

from andesvl_jax.data.atomic_io import atomic_write_text, atomic_write_with
from andesvl_jax.data.synthetic.tasks_long import LONG_TASKS
from andesvl_jax.eval.long_context import (
    DEFAULT_BUDGETS,
    FULL,
    build_suite,
    condition_name,
    goals,
    markdown_table,
    run_condition,
    summarize,
)

WEAK_MODEL = 0.5  # full-cache mean score below which the comparison is flagged as meaningless


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-long-context",
        help="KV-eviction policies x budgets vs the full cache on RULER-style long-context tasks",
        description=__doc__,
    )
    p.add_argument("--checkpoint", required=True, help="training workdir or model directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--tasks", default=",".join(LONG_TASKS), help="comma-separated task names")
    p.add_argument("--lengths", default="1024,2048,4096", help="prompt lengths (tokens)")
    p.add_argument("--per-cell", type=int, default=8, help="samples per (task, length)")
    p.add_argument(
        "--policies", default="all", help="comma-separated policies (all: infer.kv.POLICIES)"
    )
    p.add_argument("--budgets", default=",".join(f"{b:g}" for b in DEFAULT_BUDGETS))
    p.add_argument("--schedule", default="chunk", choices=("chunk", "end"))
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="every policy's recent/observation window (default: each policy's own; short "
        "prompts need a small one, since the budget must hold the window)",
    )
    p.add_argument("--prefill-chunk", type=int, default=256)
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="rows per compiled call (the suite in one: one compile)",
    )
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-full",
        action="store_true",
        help="skip the full-cache condition unless already in OUT (to split a sweep over processes "
        "writing the same OUT: one with the full cache, the others --no-full; a last run without "
        "it collects everything)",
    )
    p.set_defaults(func=main)


def plot(table: dict, budgets, path: pathlib.Path) -> None:
    """Mean score vs budget, one line per policy, the full cache as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    policies = sorted({row["policy"] for row in table.values() if row["policy"]})
    for policy in policies:
        xs = [b for b in budgets if condition_name(policy, b) in table]
        ax.plot(
            [100 * b for b in xs],
            [100 * table[condition_name(policy, b)]["mean"] for b in xs],
            marker="o",
            label=policy,
        )
    if FULL in table:
        ax.axhline(100 * table[FULL]["mean"], color="k", linestyle="--", label="full cache")
    ax.set_xlabel("KV budget (% of the prompt kept)")
    ax.set_ylabel("mean score over tasks and lengths (%)")
    ax.legend(fontsize=8)
    atomic_write_with(path, lambda tmp: FigureCanvasAgg(fig).print_png(str(tmp)))


def main(args) -> int:
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.kv import POLICIES, get_policy
    from andesvl_jax.infer.kv.budget import Budget
    from andesvl_jax.infer.load import load_model

    tasks, lengths, budgets = args.tasks.split(","), _ints(args.lengths), _floats(args.budgets)
    policies = (
        list(POLICIES) if args.policies == "all" else [p for p in args.policies.split(",") if p]
    )
    window = {} if args.window is None else {"window": args.window}
    try:
        for p in policies:
            get_policy(p, **window)
        for b in budgets:
            Budget.parse(b)
        suite = build_suite(tasks, lengths, args.per_cell, args.seed)
    except (KeyError, ValueError) as e:
        print(f"eval-long-context: {e}", file=sys.stderr)
        return 2
    model, tok = load_model(args.checkpoint)
    engine = Engine(
        model,
        tok,
        max_prompt_tokens=max(lengths) + 64,
        prefill_chunk=args.prefill_chunk,
        batch_size=args.batch_size,
    )
    out = pathlib.Path(args.out)
    (out / "conditions").mkdir(parents=True, exist_ok=True)
    skip = ("func", "overrides", "out", "policies", "budgets", "no_full")
    settings = {k: v for k, v in vars(args).items() if k not in skip}
    conditions = [(None, None)] + [(p, b) for p in policies for b in budgets]
    results = []
    for policy, budget in conditions:
        name = condition_name(policy, budget)
        path = out / "conditions" / f"{name}.json"
        if path.is_file():
            done = json.loads(path.read_text())
            if done.get("settings") == settings:
                results.append(done)
                continue
        if policy is None and args.no_full:
            continue
        kv = None if policy is None else get_policy(policy, schedule=args.schedule, **window)
        res = run_condition(engine, suite, kv, budget, args.max_new_tokens)
        res["settings"] = settings
        atomic_write_text(path, json.dumps(res, indent=1))
        results.append(res)
        print(f"{name}: {sum(r['score'] for r in res['rows']) / len(res['rows']):.3f} "
              f"({res['seconds']:.0f} s)", flush=True)  # fmt: skip
    table = summarize(results)
    met = goals(table)
    atomic_write_text(
        out / "results.json",
        json.dumps({"settings": settings, "table": table, "goals": met}, indent=1),
    )
    text = markdown_table(table, tasks)
    atomic_write_text(out / "table.md", text + "\n")
    plot(table, budgets, out / "scores.png")
    print(text)
    full = table.get(FULL)
    if full is not None and full["mean"] < WEAK_MODEL:
        print(
            f"warning: the full cache scores {100 * full['mean']:.1f} % (n={full['n']}): the model "
            "does not solve the tasks, so the goals below say nothing about eviction"
        )
    for g in met:
        print(
            f"{g['goal']}: {g['value']} (target {g['target']}): {'met' if g['met'] else 'NOT met'}"
        )
    return 0
