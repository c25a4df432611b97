"""`andesvl-jax ablate` end to end at a minuscule budget: every cell and condition reported with
paired intervals, switch effects, detectable effects and interleaved step timing, the hand-written
text of the report kept, and a rerun resumes instead of retraining."""

import json

import pytest

from andesvl_jax.cli import main
from andesvl_jax.eval.ablate_cli import CELLS as GRID
from andesvl_jax.eval.ablate_cli import CONDITIONS, FACTORS
from andesvl_jax.eval.ablate_paired import paired_analysis
from andesvl_jax.eval.ablate_report import aggregate

# The second drops the absolute table from the first (a nested config override).
CELLS = ["rope2d_on-shuffle_on", "rope2d_on-shuffle_on-abs_off"]
TEST_CONDITIONS = ["train_res", "patches_4x", "aspect_1to4", "test_high"]
ABS = "absolute table (RoPE on)"


def _ablate(tmp_path):
    return main(
        [
            "ablate",
            f"--workdir={tmp_path / 'runs'}",
            "--seeds=0",
            "--steps=2",
            "--eval-samples=6",
            f"--cells={','.join(CELLS)}",
            "--batch-size=6",
            "--tasks=position",
            "--timing-rounds=2",
            f"--conditions={','.join(TEST_CONDITIONS)}",
            f"--doc={tmp_path / 'docs' / 'ablations.md'}",
            "--config.data.worker_count=0",
            "--config.data.batch_size=8",  # the tests run 8 host devices
        ]
    )


def test_ablate_reports_every_cell_and_condition_and_resumes(tmp_path):
    assert _ablate(tmp_path) == 0
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert list(results["table"]) == CELLS and len(results["runs"]) == len(CELLS)
    for cell in CELLS:
        per = results["table"][cell]["conditions"]
        assert set(per) == set(TEST_CONDITIONS)
        assert all(0.0 <= per[c]["mean"] <= 1.0 for c in TEST_CONDITIONS)
        assert all(per[c]["downscaled"] == 0 for c in TEST_CONDITIONS)
        assert results["table"][cell]["step_time_s"]["mean"] > 0
    # more patches at the larger conditions; train-low / test-high (224-448 px) has the most
    grow = [
        results["table"][CELLS[0]]["conditions"][k]["patches_per_image"]
        for k in ("train_res", "patches_4x", "test_high")
    ]
    assert grow == sorted(grow) and grow[0] < grow[1] < grow[2]
    # Only the absolute-table switch has a pair of cells differing in it alone.
    assert list(results["effects"]) == [ABS]
    effect = results["paired"]["effects"][ABS]["test_high"]
    assert [tuple(p) for p in effect["pairs"]] == [(CELLS[0], CELLS[1])]
    lo, hi = effect["all"]["ci"]
    assert lo <= effect["all"]["diff"] <= hi and 0.0 <= effect["all"]["p_mcnemar"] <= 1.0
    assert effect["all"]["questions"] == 6 and effect["all"]["seeds"] == 1
    assert set(results["paired"]["cells"][CELLS[1]]["aspect_1to4"]) >= {"all", "position"}
    assert set(results["conditions"]) == set(TEST_CONDITIONS) and set(TEST_CONDITIONS) < set(
        CONDITIONS
    )
    # interleaved timing: every cell, ratio 1 for the baseline against itself
    assert set(results["timing"]) == set(CELLS)
    assert results["timing"][CELLS[0]]["ratio"] == pytest.approx(1.0)
    assert all(t["median_s"] > 0 for t in results["timing"].values())
    run_config = json.loads((tmp_path / "runs" / f"{CELLS[1]}-s0" / "config.json").read_text())
    assert run_config["model"]["vision"]["use_abs_pos"] is False

    doc = tmp_path / "docs" / "ablations.md"
    text = doc.read_text()
    assert all(name in text for name in [*CELLS, *TEST_CONDITIONS, "andesvl-jax ablate", "McNemar"])
    assert "step-time ratio" in text and "--tasks position" in text
    assert (tmp_path / "docs" / "ablations.png").stat().st_size > 0

    # rerun: nothing retrains or re-evaluates, text outside the markers survives
    outputs = [
        tmp_path / "runs" / f"{c}-s0" / f
        for c in CELLS
        for f in ("train_summary.json", "eval.json")
    ] + [tmp_path / "runs" / "timing.json"]
    stamps = {p: p.stat().st_mtime_ns for p in outputs}
    doc.write_text("Hand-written reading.\n\n" + text)
    assert _ablate(tmp_path) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rewritten = doc.read_text()
    assert rewritten.startswith("Hand-written reading.") and rewritten.count("ablate:begin") == 1


def _record(cell, seed, acc):
    evals = {"accuracy": acc, "per_task": {"count": acc}, "tokens_per_image": 9.0,
             "max_tokens_per_image": 25.0, "patches_per_image": 36.0, "downscaled": 0}  # fmt: skip
    train = {"step_time_s": 0.5, "samples_per_step": 60.0, "final_loss": 1.0, "params": 1}
    return {"cell": cell, "seed": seed, "train": train, "eval": {"train_res": evals}}


def test_factor_effects_average_the_matching_pairs():
    # accuracy = 0.5 + 0.2 * rope2d + 0.1 * shuffle, +-0.02 between the two seeds
    records = [
        _record(name, seed, 0.5 + 0.2 * c.rope2d + 0.1 * c.shuffle + (0.02 if seed else -0.02))
        for name, c in GRID.items()
        for seed in (0, 1)
    ]
    out = aggregate(records, GRID, FACTORS, ["train_res"])
    cell = out["table"]["rope2d_on-shuffle_on"]["conditions"]["train_res"]
    assert cell["mean"] == pytest.approx(0.8) and cell["half_range"] == pytest.approx(0.02)
    rope, shuffle = (
        out["effects"]["2D-RoPE"]["train_res"],
        out["effects"]["pixel shuffle"]["train_res"],
    )
    assert rope["effect"] == pytest.approx(0.2) and shuffle["effect"] == pytest.approx(0.1)
    # two pairs, each (std^2/2 + std^2/2) with std = 0.02*sqrt(2): se = sqrt(2 * 0.0008) / 2
    assert rope["se"] == pytest.approx((2 * 0.0008) ** 0.5 / 2)


def _paired_record(cell, seed, correct, tasks):
    return {"cell": cell, "seed": seed, "eval": {"train_res": {"correct": correct, "tasks": tasks}}}


def test_paired_analysis_hand_computed():
    # Two cells differing in the absolute table only; 2 seeds x 4 questions.
    tasks = ["count", "colour", "spatial", "count"]
    on = {0: [1, 1, 1, 0], 1: [1, 0, 1, 1]}
    off = {0: [0, 1, 0, 0], 1: [1, 0, 0, 1]}
    cells = {c: GRID[c] for c in ("rope2d_on-shuffle_on", "rope2d_on-shuffle_on-abs_off")}
    records = [_paired_record("rope2d_on-shuffle_on", s, on[s], tasks) for s in (0, 1)]
    records += [_paired_record("rope2d_on-shuffle_on-abs_off", s, off[s], tasks) for s in (0, 1)]
    out = paired_analysis(records, cells, FACTORS, ["train_res"])
    assert out["seeds"] == [0, 1]
    acc = out["cells"]["rope2d_on-shuffle_on"]["train_res"]
    assert acc["all"]["mean"] == pytest.approx(6 / 8)
    assert acc["position"]["mean"] == pytest.approx(5 / 6)  # count, spatial, count per seed
    assert acc["colour"]["mean"] == pytest.approx(1 / 2)
    effect = out["effects"][ABS]["train_res"]
    # Discordant pairs: on-only 3 (seed 0 q0, q2; seed 1 q2), off-only 0.
    assert effect["all"]["diff"] == pytest.approx(3 / 8)
    assert (effect["all"]["a_only"], effect["all"]["b_only"]) == (3, 0)
    assert effect["all"]["p_mcnemar"] == pytest.approx(0.25)  # 2 * (1/2)^3
    assert effect["all"]["mde"] > 0
    assert effect["position"]["diff"] == pytest.approx(3 / 6)
    assert "2D-RoPE" not in out["effects"]  # no pair of these cells differs in RoPE alone
