"""Per-question paired statistics of an ablation (eval/paired_stats.py over `andesvl-jax ablate` runs).

Every run's eval holds, per condition, `correct` (one bool per held-out question) and `tasks` (the
question's task), the same questions in every run. For each cell x condition x question group
(all questions, the position tasks, each task) the accuracy gets a two-way (seed x question)
bootstrap interval; for each switch, the on - off difference — averaged over the pairs of cells
that differ in that switch only, seed s against seed s, question against question — gets its
bootstrap interval, the exact McNemar p-value and the minimal detectable effect of this design
(80 % power, two-sided 5 %) from its seed and question variance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from andesvl_jax.eval.paired_stats import (
    bootstrap_mean,
    mcnemar,
    mde,
    paired_bootstrap,
    variance_components,
)

# Tasks whose answer depends on where things are in the image (colour is the position-free control).
POSITION_TASKS = ("count", "ocr_digits", "spatial")


def factor_pairs(cells: dict, factors: dict, label: str) -> list[tuple[str, str]]:
    """(on, off) cell names differing in factor `label` only (cells: name -> Cell)."""
    field = factors[label]
    return [
        (a, b)
        for a, ca in cells.items()
        for b, cb in cells.items()
        if getattr(ca, field) and not getattr(cb, field)
        and all(getattr(ca, f) == getattr(cb, f) for f in factors.values() if f != field)
    ]  # fmt: skip


def question_groups(tasks: list[str]) -> dict[str, np.ndarray]:
    """Group name -> mask over the questions: all, position (if any), and each task."""
    tasks_arr = np.asarray(tasks)
    groups = {"all": np.ones(len(tasks), bool)}
    position = np.isin(tasks_arr, POSITION_TASKS)
    if position.any():
        groups["position"] = position
    groups.update({t: tasks_arr == t for t in sorted(set(tasks))})
    return groups


def correctness(records: list[dict], cell: str, condition: str, seeds: list[int]) -> np.ndarray:
    """[seeds, questions] 0/1 matrix of one cell under one condition."""
    by_seed = {r["seed"]: r for r in records if r["cell"] == cell}
    return np.array([by_seed[s]["eval"][condition]["correct"] for s in seeds], dtype=np.float64)


def _interval(stat: dict) -> dict:
    return {"mean": stat["mean"], "ci": list(stat["ci"])}


def _effect(on: np.ndarray, off: np.ndarray) -> dict[str, Any]:
    """on / off: [pairs, seeds, questions]; the difference averaged over pairs."""
    d_on, d_off = on.mean(axis=0), off.mean(axis=0)
    boot = paired_bootstrap(d_on, d_off)
    test = mcnemar(on.reshape(-1, on.shape[-1]), off.reshape(-1, off.shape[-1]))
    seeds, questions = d_on.shape
    comps = variance_components(d_on - d_off) if questions > 1 else None
    return {
        "diff": boot["mean"],
        "ci": list(boot["ci"]),
        "p_mcnemar": test["p"],
        "a_only": test["a_only"],
        "b_only": test["b_only"],
        "mde": mde(comps, seeds, questions) if comps else None,
        "components": comps,
        "seeds": seeds,
        "questions": questions,
    }


def paired_analysis(
    records: list[dict], cells: dict, factors: dict, conditions: list[str]
) -> dict[str, Any]:
    """{'seeds', 'cells': cell -> condition -> group -> {mean, ci}, 'effects': factor ->
    condition -> group -> {diff, ci, p_mcnemar, mde, ...}} from `andesvl-jax ablate` records."""
    seeds = sorted(
        set.intersection(*({r["seed"] for r in records if r["cell"] == c} for c in cells))
    )
    out: dict[str, Any] = {"seeds": seeds, "cells": {}, "effects": {}}
    if not seeds:
        return out
    for condition in conditions:
        first = next(r for r in records if r["cell"] in cells)["eval"][condition]
        groups = question_groups(first["tasks"])
        matrices = {c: correctness(records, c, condition, seeds) for c in cells}
        for cell, m in matrices.items():
            out["cells"].setdefault(cell, {})[condition] = {
                g: _interval(bootstrap_mean(m[:, mask])) for g, mask in groups.items()
            }
        for label in factors:
            pairs = factor_pairs(cells, factors, label)
            if not pairs:
                continue
            on = np.stack([matrices[a] for a, _ in pairs])
            off = np.stack([matrices[b] for _, b in pairs])
            out["effects"].setdefault(label, {})[condition] = {
                "pairs": pairs,
                **{g: _effect(on[..., mask], off[..., mask]) for g, mask in groups.items()},
            }
    return out
