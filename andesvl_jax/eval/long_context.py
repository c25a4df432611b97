"""Long-context evaluation where KV eviction matters: RULER-style tasks and a summarisation task
(data/synthetic/tasks_long.py), every eviction policy at several budgets against the full cache.

Scores follow RULER: the retrieval tasks (niah_single, niah_multikey, vartrack, cwe) score the
fraction of the reference's parts found in the output (`string_match_all`: vartrack's two
variable names each count half), the summary ROUGE-1 F (eval/metrics/rouge.py, Google's
rouge-score). A condition's score is the mean over its (task, length) cells, each the mean of its
samples, so every task weighs the same.

    suite = build_suite(["niah_single", "summary"], lengths=[2048, 4096], per_cell=8)
    rows = run_condition(engine, suite, policy="multiwindow", budget=0.25)
    table = summarize(all_rows)            # condition -> mean, per task, per length
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from andesvl_jax.data.sample import Sample
from andesvl_jax.data.synthetic.tasks_long import LONG_TASK_METRIC, LONG_TASKS, long_context_sample
from andesvl_jax.eval.metrics.rouge import rouge_1

FULL = "full"
DEFAULT_BUDGETS = (0.1, 0.25, 0.5)
OURS, BASELINE = "multiwindow", "snapkv"


def condition_name(policy, budget: float | None) -> str:
    """'full' or 'snapkv@0.25' (policy: a name or a `KVPolicy`)."""
    return FULL if policy is None else f"{getattr(policy, 'name', policy)}@{budget:g}"


def build_suite(tasks: Sequence[str], lengths: Sequence[int], per_cell: int, seed: int = 0):
    """per_cell samples of each (task, length), deterministic in (seed, task, length, index); the
    lengths count prompt characters (= tokens with the embedded character vocabulary) before the
    chat template."""
    unknown = sorted(set(tasks) - set(LONG_TASKS))
    if unknown:
        raise KeyError(
            f"long-context tasks {unknown} unknown; expected some of {sorted(LONG_TASKS)}"
        )
    if per_cell < 1 or not lengths or min(lengths) < 64:
        raise ValueError(
            f"need per_cell >= 1 and lengths >= 64 characters; got per_cell={per_cell}, "
            f"lengths={list(lengths)}"
        )
    order = sorted(LONG_TASKS)
    return [
        long_context_sample(t, np.random.default_rng([seed, order.index(t), n, i]), n)
        for n in lengths
        for t in tasks
        for i in range(per_cell)
    ]


def score(task: str, prediction: str, answer: str) -> float:
    """RULER's string_match_all for the retrieval tasks, ROUGE-1 F for the summary."""
    if LONG_TASK_METRIC[task] == "rouge1":
        return rouge_1(prediction, answer)
    parts = answer.split()
    return sum(p.lower() in prediction.lower() for p in parts) / len(parts)


def run_condition(engine, suite: list[Sample], policy=None, budget=None, max_new_tokens=128):
    """Greedy answers for the suite under one condition -> one row per sample (task, length,
    prediction, score) plus the condition's wall time (compilation included) and the share of the
    prompts' KV entries eviction kept. Rows of different lengths share batches (the engine pads
    them to one bucket), so a condition compiles once when the engine's batch holds the suite."""
    start = time.perf_counter()
    outs = engine.generate(suite, max_new_tokens=max_new_tokens, kv_policy=policy, kv_budget=budget)
    seconds = time.perf_counter() - start
    kept = [r.kept_fraction for r in engine.kv_reports]
    rows = []
    for s, out in zip(suite, outs, strict=True):
        task = s.meta["long_task"]
        rows.append(
            {
                "task": task,
                "length": s.meta["length"],
                "prediction": out.text,
                "answer": s.answer,
                "score": score(task, out.text, s.answer),
            }
        )
    return {
        "condition": condition_name(policy, budget),
        "policy": getattr(policy, "name", policy),
        "budget": budget,
        "seconds": seconds,
        "kept_fraction": float(np.mean(kept)) if kept else 1.0,
        "rows": rows,
    }


@dataclasses.dataclass(frozen=True)
class Cell:
    mean: float
    n: int


def _cells(rows) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["length"]), []).append(r["score"])
    return {k: Cell(float(np.mean(v)), len(v)) for k, v in cells.items()}


def summarize(results: Sequence[dict]) -> dict:
    """condition -> {mean, n, by_task, by_length, relative (to full), seconds, kept_fraction}."""
    table = {}
    for res in results:
        cells = _cells(res["rows"])
        tasks = sorted({t for t, _ in cells})
        lengths = sorted({n for _, n in cells})
        table[res["condition"]] = {
            "policy": res["policy"],
            "budget": res["budget"],
            "mean": float(np.mean([c.mean for c in cells.values()])),
            "n": len(res["rows"]),
            "by_task": {t: float(np.mean([cells[t, n].mean for n in lengths])) for t in tasks},
            "by_length": {n: float(np.mean([cells[t, n].mean for t in tasks])) for n in lengths},
            "seconds": res["seconds"],
            "kept_fraction": res["kept_fraction"],
        }
    full = table.get(FULL)
    for row in table.values():
        row["relative"] = row["mean"] / full["mean"] if full and full["mean"] > 0 else None
    return table


def goals(table: dict) -> list[dict]:
    """Issue 16's targets, each with its numbers and met / not met (None where a cell is missing):
    ours at 25 % >= 97 % of full; ours above SnapKV at 25 % and 50 %; summary ROUGE-1 at 50 %
    at least 10 % (relative) above SnapKV's (AndesVL's claim)."""
    get = table.get
    ours25, ours50 = get(condition_name(OURS, 0.25)), get(condition_name(OURS, 0.5))
    snap25, snap50 = get(condition_name(BASELINE, 0.25)), get(condition_name(BASELINE, 0.5))
    out = []

    def add(name, value, target, met):
        out.append({"goal": name, "value": value, "target": target, "met": met})

    full = get(FULL)
    if ours25 and full:
        add("ours@25 % / full", ours25["relative"], ">= 0.97", ours25["relative"] >= 0.97)
    for budget, ours, snap in ((0.25, ours25, snap25), (0.5, ours50, snap50)):
        if ours and snap:
            diff = ours["mean"] - snap["mean"]
            add(f"ours - snapkv @{budget:g}", diff, "> 0", diff > 0)
    if ours50 and snap50 and "summary" in ours50["by_task"]:
        o, s = ours50["by_task"]["summary"], snap50["by_task"]["summary"]
        ratio = o / s if s > 0 else None
        add(
            "summary ROUGE-1 ours / snapkv @0.5",
            ratio,
            ">= 1.10",
            ratio is not None and ratio >= 1.1,
        )
    return out


def markdown_table(table: dict, tasks: Sequence[str]) -> str:
    """One row per condition: mean, relative to full, per-task means, kept share, seconds."""
    head = ["condition", "mean", "vs full", *tasks, "kept", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.items():
        rel = "" if row["relative"] is None else f"{100 * row['relative']:.1f} %"
        cells = [f"{100 * row['by_task'].get(t, float('nan')):.1f}" for t in tasks]
        lines.append(
            f"| {name} | {100 * row['mean']:.1f} | {rel} | "
            + " | ".join(cells)
            + f" | {100 * row['kept_fraction']:.0f} % | {row['seconds']:.0f} |"
        )
    return "\n".join(lines)
