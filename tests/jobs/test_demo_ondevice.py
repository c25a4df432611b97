"""The on-device main job end to end at a reduced size: every step runs from a (2-step) SFT run,
every table of the report is filled from computed values, and a rerun resumes without redoing
finished steps."""

import json
import math

import pytest

from andesvl_jax.cli import main
from andesvl_jax.jobs.demo import EXPERIMENT
from andesvl_jax.jobs.demo_ondevice import STEPS
from andesvl_jax.jobs.ondevice.report import SECTIONS


@pytest.fixture(scope="module")
def ondevice(tmp_path_factory):
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train

    workdir = tmp_path_factory.mktemp("demo")
    config = load_config(f"{EXPERIMENT}:stage=sft,steps=2", ["--config.progress=False"])
    train(config, workdir / "sft")  # stands in for the demo's SFT checkpoint
    args = ["demo-ondevice", "--workdir", str(workdir), "--steps-scale", "0.001"]
    assert main([*args, "--samples", "4", "--repeats", "1"]) == 0
    return workdir, args


def _numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def test_every_table_is_filled_from_computed_values(ondevice):
    workdir, _ = ondevice
    records = json.loads((workdir / "ondevice" / "report.json").read_text())
    assert set(records) == {s.name for s in STEPS}
    assert records["longctx"]["trained_here"]  # the eviction table's model, made by this run
    eviction = {r["condition"]: r for r in records["table_eviction"]["rows"]}
    assert {"full", "snapkv@0.25", "multiwindow@0.25", "snapkv@0.5", "multiwindow@0.5"} <= set(eviction)
    for name in SECTIONS:
        rec = records[name]
        assert rec["rows"], name
        values = list(_numbers(rec["rows"]))
        assert values and all(math.isfinite(v) for v in values), name
        assert isinstance(rec["met"], bool)
    qat = {r["form"].split()[0]: r for r in records["table_qat"]["rows"]}
    assert qat["float"]["top1_consistency"] == 1.0  # the float model against itself
    assert 0 <= qat["QAT"]["top1_consistency"] <= 1 and qat["QAT"]["bpw"] < 5
    spec = records["table_speculative"]
    assert spec["lossless"] and spec["rows"][-1]["tau"] >= 1.0
    assert all(r["tokens"] > 0 for r in spec["rows"])
    size = records["table_size"]["rows"]
    assert size[-1]["sparsity"] >= 0.75 and size[-1]["llm_linear_bpw"] < 2.5
    assert all(r["peak_rss_gib"] > 0.1 for r in size)
    runtimes = {r["runtime"].split()[0] for r in records["table_runtimes"]["rows"]}
    assert len(runtimes) == 2  # llama.cpp and LiteRT-LM each ran its export
    report = (workdir / "ondevice" / "report.md").read_text()
    assert all(title in report for title, _ in SECTIONS.values())
    assert "nan" not in report.lower()


def test_a_rerun_resumes_at_the_unfinished_step(ondevice, capsys):
    workdir, args = ondevice
    root = workdir / "ondevice"
    stamps = {s.name: (root / s.name / "step.json").stat().st_mtime_ns for s in STEPS}
    (root / "table_size" / "step.json").unlink()  # as if killed while measuring sizes
    assert main([*args, "--samples", "4", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("done already") == len(STEPS) - 1
    after = {s.name: (root / s.name / "step.json").stat().st_mtime_ns for s in STEPS}
    assert [n for n in stamps if after[n] != stamps[n]] == ["table_size"]
    with pytest.raises(SystemExit, match="unknown steps"):
        main([*args, "--redo", "nonsense"])
