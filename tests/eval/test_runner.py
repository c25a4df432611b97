"""The benchmark runner, the held-out synthetic suite and the `eval` command, on a tiny random model:
reports written, resume after a crash, a VLMEvalKit TSV end to end, eval/train disjointness."""

import base64
import csv
import io
import json

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from andesvl_jax.cli import main
from andesvl_jax.config import get_preset
from andesvl_jax.data.synthetic import SyntheticSource
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.eval.metrics import evaluate_predictions
from andesvl_jax.eval.readers import read_benchmark
from andesvl_jax.eval.runner import read_predictions, run_benchmarks
from andesvl_jax.eval.suite import (
    DOMAINS,
    SYNTHETIC_BENCHMARKS,
    TRAIN_CONTEXT,
    pad_to_aspect,
    synthetic_benchmark,
)
from andesvl_jax.infer.engine import Engine
from andesvl_jax.models.andesvl import AndesVL

LIMIT, NEW_TOKENS = 4, 4


@pytest.fixture(scope="module")
def engine():
    model = AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0))
    tok = TextTokenizer.default()
    return Engine(
        model, tok, image_max_size=112, max_prompt_tokens=512, max_patches=512, batch_size=2
    )


def _run(engine, benchmarks, out, **kw):
    return run_benchmarks(
        engine, benchmarks, out, limit=LIMIT, max_new_tokens=NEW_TOKENS, progress=False, **kw
    )


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _scores(summary) -> dict:
    keep = ("score", "n", "overall", "per_category", "metric", "domain")
    return {name: {k: r[k] for k in keep} for name, r in summary["benchmarks"].items()}


# ---- the runner ----


def test_runner_writes_predictions_and_reports(engine, tmp_path):
    benchmarks = {name: synthetic_benchmark(name, 6) for name in ("general", "hallucination")}
    summary = _run(engine, benchmarks, tmp_path)
    for name, bench in benchmarks.items():
        lines = _lines(tmp_path / "predictions" / f"{name}.jsonl")
        assert [r["index"] for r in lines] == list(range(LIMIT))  # limit: the first 4 of 6
        assert {"prompt", "prediction", "reference", "score", "finish_reason"} <= set(lines[0])
        assert lines[0]["reference"] == bench[0].answer
        assert lines[0]["prompt"].startswith("user: <image>\n")
        result = summary["benchmarks"][name]
        assert result["n"] == LIMIT and result["generated"] == LIMIT and result["resumed"] == 0
        assert result["seconds"] > 0 and result["reader"]["stats"] == {"ok": 6}
        assert result["score"] == pytest.approx(np.mean([r["score"]["score"] for r in lines]))
        assert result["overall"]["count"] == LIMIT and "unparsable" in result["overall"]
    assert summary["benchmarks"]["hallucination"]["metric"] == "pope"
    assert "f1" in summary["benchmarks"]["hallucination"]["overall"]
    assert set(summary["benchmarks"]["hallucination"]["per_category"]) <= {"present", "absent"}
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(summary))
    table = (tmp_path / "results.md").read_text()
    assert "| general | general | vqa_accuracy |" in table
    assert "| hallucination | hallucination | pope |" in table
    with Image.open(tmp_path / "results.png") as png:
        assert png.format == "PNG" and png.size[0] > 100


class CrashAfter:
    """An engine that raises on its (calls + 1)-th generate call, like a killed run."""

    def __init__(self, engine, calls: int):
        self.engine, self.calls, self.batch_size = engine, calls, engine.batch_size

    def generate(self, samples, **kw):
        if self.calls == 0:
            raise RuntimeError("simulated crash")
        self.calls -= 1
        return self.engine.generate(samples, **kw)


def test_resume_after_a_crash_gives_the_same_results(engine, tmp_path):
    benchmarks = {"general": synthetic_benchmark("general", LIMIT)}
    reference = _run(engine, benchmarks, tmp_path / "whole")
    expected = _lines(tmp_path / "whole" / "predictions" / "general.jsonl")

    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(CrashAfter(engine, calls=1), benchmarks, out)  # one batch of 2 written, then dead
    path = out / "predictions" / "general.jsonl"
    assert len(_lines(path)) == 2
    # The crash also cut the second line in half.
    text = path.read_text()
    path.write_text(text[: text.index("\n") + 1] + text[text.index("\n") + 1 :][:40])

    summary = _run(engine, benchmarks, out)
    result = summary["benchmarks"]["general"]
    assert (result["resumed"], result["generated"], result["dropped_lines"]) == (1, 3, 1)
    lines = _lines(path)
    assert sorted(r["index"] for r in lines) == list(range(LIMIT))  # no duplicates, no gaps
    by_index = {r["index"]: r["prediction"] for r in lines}
    assert by_index == {r["index"]: r["prediction"] for r in expected}
    assert _scores(summary) == _scores(reference)

    again = _run(engine, benchmarks, out)  # nothing left to do
    assert again["benchmarks"]["general"]["generated"] == 0
    assert _scores(again) == _scores(reference)


def test_read_predictions_drops_broken_and_repeated_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    good = [json.dumps({"index": i, "prediction": str(i)}) for i in range(3)]
    path.write_text("\n".join([good[0], good[1], good[1], "not json", good[2], '{"index": 3, "pr']))
    records, dropped = read_predictions(path)
    assert sorted(records) == [0, 1, 2] and dropped == 3
    assert path.read_text().splitlines() == [good[0], good[1], good[2]]  # rewritten clean


def test_resume_refuses_predictions_of_other_prompts(engine, tmp_path):
    _run(engine, {"general": synthetic_benchmark("general", LIMIT)}, tmp_path)
    with pytest.raises(ValueError, match="different prompt"):
        _run(engine, {"general": synthetic_benchmark("hallucination", LIMIT)}, tmp_path)


# ---- a VLMEvalKit TSV end to end ----


def _b64_png(colour) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _write_mcq_tsv(path):
    """Three answerable colour questions (options A-D, base64 PNGs) and one corrupt row."""
    colours = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 220)}
    rows = [
        [i, _b64_png(rgb), "What colour is the image?", "red", "green", "blue", "black", "ABC"[i]]
        + ["colour" if i < 2 else "other"]
        for i, rgb in enumerate(colours.values())
    ]
    rows.append([3, "@@not base64@@" * 8, "Broken?", "a", "b", "c", "d", "A", "colour"])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["index", "image", "question", "A", "B", "C", "D", "answer", "category"])
        writer.writerows(rows)
    return path


def test_vlmeval_tsv_end_to_end(engine, tmp_path):
    path = _write_mcq_tsv(tmp_path / "MMBench_DEV_EN.tsv")
    bench = read_benchmark("vlmeval_tsv", path, on_error="skip")
    summary = _run(engine, {"mmbench": bench}, tmp_path / "out")
    result = summary["benchmarks"]["mmbench"]
    assert result["metric"] == "mmbench_circular" and result["domain"] == "general"
    assert result["n"] == 3 and set(result["per_category"]) == {"colour", "other"}
    assert result["reader"]["stats"] == {"ok": 3, "skipped/bad_base64": 1}
    lines = _lines(tmp_path / "out" / "predictions" / "mmbench.jsonl")
    assert [r["reference"] for r in lines] == ["A", "B", "C"]
    assert "Options:\nA. red\nB. green\nC. blue\nD. black" in lines[0]["prompt"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| general | mmbench | mmbench_circular |" in md and "| 3 |" in md
    assert md.splitlines()[2].split("|")[7].strip() == "1"  # the skipped row is reported


# ---- the synthetic suite ----


def test_suite_covers_every_domain_with_distinct_seeds():
    assert {b.domain for b in SYNTHETIC_BENCHMARKS.values()} == set(DOMAINS)
    seeds = [b.seed for b in SYNTHETIC_BENCHMARKS.values()]
    assert len(set(seeds)) == len(seeds) and not {0, 1234} & set(seeds)


@pytest.mark.parametrize("name", sorted(SYNTHETIC_BENCHMARKS))
def test_suite_references_score_perfectly(name):
    bench = synthetic_benchmark(name, 6)
    assert len(bench) == 6 and bench.stats.to_json() == {"ok": 6}
    metas = [s.meta for s in bench]
    assert all(m["benchmark"] == name and m["metric"] == metas[0]["metric"] for m in metas)
    result = evaluate_predictions(metas[0]["metric"], [s.answer for s in bench], metas)
    assert result["overall"]["score"] == 1.0 and result["overall"]["unparsable"] == 0


def test_suite_variants_leave_the_training_resolutions():
    sides = [im.size for s in synthetic_benchmark("general_large", 8) for im in s.images]
    assert min(min(wh) for wh in sides) > 2 * TRAIN_CONTEXT.max_side - 1
    aspects = [
        w / h for s in synthetic_benchmark("general_extreme_aspect", 8) for w, h in
        (im.size for im in s.images)
    ]  # fmt: skip
    assert all(a >= 3.9 or a <= 1 / 3.9 for a in aspects) and min(aspects) < 1 < max(aspects)
    padded = pad_to_aspect(Image.new("RGB", (10, 20), (1, 2, 3)), 4.0)
    assert padded.size == (80, 20) and padded.getpixel((0, 0)) == (1, 2, 3)


def _fingerprint(sample) -> tuple:
    pixels = tuple(np.asarray(im).tobytes() for im in sample.images)
    return tuple(m.content for m in sample.messages), pixels


# Tasks whose whole content space is small (a 1-2 digit number or word at one of 57 heights, a
# sum of two small numbers, one shape in one colour): a long training run draws most of it, so an
# eval sample can equal a training sample by content although the streams are disjoint.
SMALL_CONTENT_TASKS = {"math", "ocr_digits", "ocr_latin", "ocr_cjk", "colour"}


def test_suite_samples_never_equal_training_samples():
    for bench in SYNTHETIC_BENCHMARKS.values():
        source = bench.source(8)
        held_out = [source[i] for i in range(8)]  # before any variant padding
        assert all(s.origin.startswith("synthetic:eval:") for s in held_out)
        # Same tasks, seed and context: only the split differs, and every sample differs.
        train = SyntheticSource(dict(bench.tasks), size=8, seed=bench.seed, ctx=bench.ctx)
        assert all(_fingerprint(train[i]) != _fingerprint(held_out[i]) for i in range(8))
        seen = {_fingerprint(s) for s in held_out}
        for task in set(bench.tasks) - SMALL_CONTENT_TASKS:
            for seed in (0, bench.seed):  # the training configs' seed, and the suite's own
                train = SyntheticSource({task: 1.0}, size=24, seed=seed, ctx=bench.ctx)
                assert not seen & {_fingerprint(train[i]) for i in range(24)}, (bench.name, task)


def test_suite_variants_never_share_an_image_size_with_training():
    # Training draws sides in TRAIN_CONTEXT: no training image can equal a variant image.
    lo, hi = TRAIN_CONTEXT.min_side, TRAIN_CONTEXT.max_side
    for name in ("general_large", "general_extreme_aspect"):
        for sample in synthetic_benchmark(name, 8):
            for w, h in (im.size for im in sample.images):
                assert not (lo <= w <= hi and lo <= h <= hi), (name, w, h)


# ---- the command ----


def test_eval_command_on_an_official_fixture(fixtures_dir, tmp_path, capsys):
    ckpt = fixtures_dir / "andesvl_aimv2_tiny"
    tsv = _write_mcq_tsv(tmp_path / "MMBench_DEV_EN.tsv")
    argv = ["eval", "--checkpoint", str(ckpt), "--benchmarks", "general", "--limit", "2"]
    argv += ["--data", f"mmb=vlmeval_tsv:{tsv}", "--out", str(tmp_path / "out")]
    assert main([*argv, "--max-new-tokens", "4", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| general | general | vqa_accuracy |" in printed
    assert "|  | mmb | mmbench_circular |" in printed  # the --data file, also general
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [results["benchmarks"][n]["n"] for n in ("general", "mmb")] == [2, 2]
    assert results["benchmarks"]["mmb"]["reader"]["stats"]["skipped/bad_base64"] == 1
    assert len(_lines(tmp_path / "out" / "predictions" / "general.jsonl")) == 2


def test_eval_command_rejects_unknown_benchmarks_and_bad_data_specs(tmp_path, capsys):
    base = ["eval", "--checkpoint", str(tmp_path)]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        main([*base, "--benchmarks", "general,nonesuch"])
    with pytest.raises(SystemExit):
        main([*base, "--data", "mmbench.tsv"])
    assert "expected NAME=FORMAT:PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="not one of"):
        main([*base, "--data", "x=csv:x.csv"])
    with pytest.raises(SystemExit, match="not found"):
        main([*base, "--data", f"x=vlmeval_tsv:{tmp_path / 'missing.tsv'}"])
