"""The long-context eviction evaluation: deterministic RULER-style tasks, RULER / ROUGE-1 scoring,
and the policies x budgets sweep end to end on a tiny model."""

import json
import re

import numpy as np
import pytest
from flax import nnx

from andesvl_jax.cli import main
from andesvl_jax.config import get_preset
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.data.synthetic.tasks_long import LONG_TASKS, long_context_sample
from andesvl_jax.eval.long_context import build_suite, goals, score, summarize
from andesvl_jax.models.andesvl import AndesVL


def test_suite_is_deterministic_and_sized():
    a = build_suite(sorted(LONG_TASKS), [300, 600], per_cell=2, seed=1)
    b = build_suite(sorted(LONG_TASKS), [300, 600], per_cell=2, seed=1)
    assert [s.messages[0].content for s in a] == [s.messages[0].content for s in b]
    assert len(a) == 2 * len(LONG_TASKS) * 2
    c = build_suite(sorted(LONG_TASKS), [300, 600], per_cell=2, seed=2)
    assert a[0].messages[0].content != c[0].messages[0].content
    for s in a:
        n = len(s.messages[0].content)
        assert s.meta["length"] - 40 <= n <= s.meta["length"] + 60, (s.meta["long_task"], n)


def test_answers_are_in_the_haystack():
    rng = np.random.default_rng(0)
    for _ in range(5):
        s = long_context_sample("niah_multikey", rng, 800)
        text = s.messages[0].content
        assert f"The number for key {s.meta['key']} is {s.answer}." in text
        assert text.endswith(f"What is the number for key {s.meta['key']}?")
        v = long_context_sample("vartrack", rng, 800)
        first, second = v.answer.split()
        body = v.messages[0].content
        assert body.index(f"VAR {first} = {v.meta['value']}.") < body.index(
            f"VAR {second} = VAR {first}."
        )
        c = long_context_sample("cwe", rng, 800)
        words = re.findall(r"\d+\. (\w+)", c.messages[0].content)
        counts = {w: words.count(w) for w in set(words)}
        assert max(counts, key=counts.get) == c.answer and counts[c.answer] == c.meta["count"]
        assert counts[c.answer] > 2 * max(n for w, n in counts.items() if w != c.answer)
        m = long_context_sample("summary", rng, 800)
        for fact in m.answer.split(". "):
            assert fact.rstrip(".") in m.messages[0].content


def test_registered_training_tasks_follow_the_context_range():
    src = SyntheticSource("long_context", seed=0)
    tasks = {src[i].meta["task"] for i in range(40)}
    assert tasks == {f"lc_{t}" for t in LONG_TASKS}
    for i in range(10):
        assert 384 <= src[i].meta["length"] <= 1152


def test_run_config_sets_the_context_range():
    from andesvl_jax.configs import base_config
    from andesvl_jax.train.loop import task_context

    data = base_config().data
    assert task_context(data).long_context == TaskContext().long_context  # unset: the default
    data.long_context = (128, 600)
    src = SyntheticSource("long_context", seed=0, ctx=task_context(data))
    assert all(128 <= src[i].meta["length"] <= 600 for i in range(10))
    with pytest.raises(ValueError, match="64 <= min <= max"):
        TaskContext(long_context=(600, 128))


def test_scores():
    assert score("niah_single", "4821", "4821") == 1.0
    assert score("niah_single", "4812", "4821") == 0.0
    assert score("vartrack", "QX", "QX MB") == 0.5  # string_match_all: each name half
    summary = "Fact: the red box holds 7 shells."
    assert score("summary", summary, summary) == 1.0
    assert 0 < score("summary", "the red box holds 3 cups", summary) < 1


def test_summary_and_goals():
    def result(cond, policy, budget, scores):
        rows = [{"task": t, "length": 512, "score": s} for t, s in scores.items()]
        return {"condition": cond, "policy": policy, "budget": budget, "seconds": 1.0,
                "kept_fraction": budget or 1.0, "rows": rows}  # fmt: skip

    table = summarize(
        [
            result("full", None, None, {"niah_single": 1.0, "summary": 0.8}),
            result("multiwindow@0.25", "multiwindow", 0.25, {"niah_single": 1.0, "summary": 0.76}),
            result("snapkv@0.25", "snapkv", 0.25, {"niah_single": 0.5, "summary": 0.7}),
            result("multiwindow@0.5", "multiwindow", 0.5, {"niah_single": 1.0, "summary": 0.8}),
            result("snapkv@0.5", "snapkv", 0.5, {"niah_single": 1.0, "summary": 0.7}),
        ]
    )
    assert table["full"]["mean"] == pytest.approx(0.9)
    assert table["multiwindow@0.25"]["relative"] == pytest.approx(0.88 / 0.9)
    met = {g["goal"]: g["met"] for g in goals(table)}
    assert met == {
        "ours@25 % / full": True,
        "ours - snapkv @0.25": True,
        "ours - snapkv @0.5": True,
        "summary ROUGE-1 ours / snapkv @0.5": True,
    }


def test_sweep_end_to_end(tmp_path, capsys):
    """A random tiny model saved as a checkpoint, 2 tasks x 1 length x 2 samples, our policy at
    one budget + the full cache: every cell of the table filled, results/table/plot written."""
    from andesvl_jax.convert.loader import export_official

    model = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0))
    export_official(model, tmp_path / "ckpt")
    out = tmp_path / "eval"
    args = ["eval-long-context", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out),
            "--tasks", "niah_single,summary", "--lengths", "320", "--per-cell", "2",
            "--policies", "multiwindow", "--budgets", "0.5", "--max-new-tokens", "4",
            "--prefill-chunk", "64", "--window", "16"]  # fmt: skip
    assert main(args) == 0
    assert "does not solve the tasks" in capsys.readouterr().out  # a random model
    res = json.loads((out / "results.json").read_text())
    assert set(res["table"]) == {"full", "multiwindow@0.5"}
    for row in res["table"].values():
        assert set(row["by_task"]) == {"niah_single", "summary"} and row["n"] == 4
    assert res["table"]["multiwindow@0.5"]["kept_fraction"] == pytest.approx(0.5, abs=0.05)
    assert res["table"]["full"]["kept_fraction"] == 1.0
    assert (out / "scores.png").stat().st_size > 0
    assert "multiwindow@0.5" in (out / "table.md").read_text()
    # a rerun with the same settings reuses every finished condition
    before = (out / "conditions" / "full.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "conditions" / "full.json").stat().st_mtime_ns == before


def test_bad_arguments_exit_2(tmp_path, capsys):
    base = ["eval-long-context", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*base, "--policies", "nope"]) == 2
    assert "unknown kv policy 'nope'" in capsys.readouterr().err
    assert main([*base, "--budgets", "1.5"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main([*base, "--window", "-1"]) == 2
    assert "must be >= 0" in capsys.readouterr().err
    assert main([*base, "--tasks", "haystack"]) == 2
    assert "unknown" in capsys.readouterr().err
