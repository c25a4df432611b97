"""`andesvl-jax ablate` end to end at a minuscule budget: every cell and condition reported, the
hand-written text of the report kept, and a rerun resumes instead of retraining."""

import json

import pytest

from andesvl_jax.cli import main
from andesvl_jax.eval.ablate_cli import CELLS as GRID
from andesvl_jax.eval.ablate_cli import CONDITIONS, FACTORS
from andesvl_jax.eval.ablate_report import aggregate

CELLS = ["rope2d_on-shuffle_on", "rope2d_off-shuffle_off"]  # both switches flip between them


def _ablate(tmp_path):
    return main(
        [
            "ablate",
            f"--workdir={tmp_path / 'runs'}",
            "--seeds=0",
            "--steps=2",
            "--eval-samples=4",
            f"--cells={','.join(CELLS)}",
            "--batch-size=4",
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
        assert set(per) == set(CONDITIONS)
        assert all(0.0 <= per[c]["mean"] <= 1.0 for c in CONDITIONS)
        assert all(per[c]["downscaled"] == 0 for c in CONDITIONS)
        assert results["table"][cell]["step_time_s"]["mean"] > 0
    # pixel shuffle off: 4 patches -> 4 tokens instead of one
    on, off = (results["table"][c]["conditions"]["train_res"] for c in CELLS)
    assert off["tokens_per_image"] == 4 * on["tokens_per_image"]
    assert off["patches_per_image"] == on["patches_per_image"]
    # more patches at the larger conditions
    grow = [on["patches_per_image"]] + [
        results["table"][CELLS[0]]["conditions"][k]["patches_per_image"]
        for k in ("patches_2x", "patches_4x")
    ]
    assert grow == sorted(grow) and grow[0] < grow[2]
    assert results["effects"] == {}  # no two of these cells differ in exactly one switch

    doc = tmp_path / "docs" / "ablations.md"
    text = doc.read_text()
    assert all(name in text for name in [*CELLS, *CONDITIONS, "andesvl-jax ablate"])
    assert (tmp_path / "docs" / "ablations.png").stat().st_size > 0

    # rerun: nothing retrains or re-evaluates, text outside the markers survives
    outputs = [
        tmp_path / "runs" / f"{c}-s0" / f
        for c in CELLS
        for f in ("train_summary.json", "eval.json")
    ]
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
