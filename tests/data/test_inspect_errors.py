"""`data inspect --errors FILE --show N`: every bad record as JSONL, N printed per kind, exit status."""

import argparse
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.error_log import BadRecordLog
from andesvl_jax.data.errors import DataError, at_image
from andesvl_jax.data.formats import open_dataset, write_arrayrecord
from andesvl_jax.data.inspect_cli import inspect_source, register
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer

MAX_TOKENS = 512


def _conv(images, text, answer="ok"):
    return {
        "image": images,
        "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": answer}],
    }


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """A llava JSONL with many bad records of every kind a JSONL reader + encoder can reject.

    Returns (dir, path, expected): expected = [(line, kind, image index or None)] of every bad line.
    """
    d = tmp_path_factory.mktemp("dirty")
    (d / "img").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(d / "img" / "ok.png")
    Image.new("RGB", (40, 30), (9, 9, 9)).save(d / "img" / "full.jpg")
    (d / "img" / "trunc.jpg").write_bytes((d / "img" / "full.jpg").read_bytes()[:120])
    (d / "img" / "text.png").write_text("not an image")
    Image.new("RGB", (1, 40)).save(d / "img" / "thin.png")
    Image.new("RGB", (2, 500)).save(d / "img" / "needle.png")
    two = "<image> and <image>\nq"
    kinds = [  # (raw line, kind or None, bad image index, copies)
        (json.dumps(_conv("img/ok.png", "<image>\nWhat?")), None, None, 9),
        ("{not json", "malformed_json", None, 12),
        ("[1, 2]", "malformed_json", None, 2),
        (json.dumps({"image": "img/ok.png"}), "missing_field", None, 7),
        (json.dumps({"conversations": "hi"}), "bad_field", None, 3),
        (json.dumps(_conv([1], "<image>\nq")), "bad_field", None, 1),
        (json.dumps(_conv(["img/ok.png", "img/gone.png"], two)), "missing_image", 1, 8),
        (json.dumps(_conv("img/trunc.jpg", "<image>\nq")), "corrupt_image", 0, 2),
        (json.dumps(_conv(["img/ok.png", "img/text.png"], two)), "corrupt_image", 1, 1),
        (json.dumps(_conv("img/thin.png", "<image>\nq")), "degenerate_image", 0, 2),
        (json.dumps(_conv("img/needle.png", "<image>\nq")), "extreme_aspect", 0, 3),
        (json.dumps(_conv("img/ok.png", "no tag")), "image_tag_mismatch", None, 4),
        (json.dumps(_conv("img/ok.png", "<image>" + "x" * 600)), "text_too_long", None, 6),
    ]
    rng = np.random.default_rng(0)
    rows = [(line, kind, img) for line, kind, img, n in kinds for _ in range(n)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    lines, expected = [], []
    for k, (line, kind, img) in enumerate(rows):
        if k % 10 == 3:
            lines.append("")  # blank lines are not records, but they count for line numbers
        lines.append(line)
        if kind:
            expected.append((len(lines), kind, img))
    path = d / "dirty.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return d, path, expected


def _cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "inspect", *argv])
    return args.func(args)


def _read_jsonl(path):
    text = path.read_text()
    assert text == "" or text.endswith("\n")  # complete lines only
    return [json.loads(line) for line in text.splitlines()]


def test_errors_file_has_every_bad_record(dirty, tmp_path, capsys):
    d, path, expected = dirty
    errors = tmp_path / "bad.jsonl"
    argv = [
        "--format",
        "llava",
        str(path),
        "--max-tokens",
        str(MAX_TOKENS),
        "--errors",
        str(errors),
    ]
    assert _cli(argv) == 0
    got = _read_jsonl(errors)
    assert [(e["line"], e["kind"], e.get("image")) for e in got] == expected
    assert all(e["file"] == str(path) and e["message"] for e in got)
    by_kind = {e["kind"]: e for e in got}
    assert by_kind["missing_image"]["image_path"] == str(d / "img" / "gone.png")
    assert "gone.png" in by_kind["missing_image"]["message"]
    assert "image" not in by_kind["malformed_json"] and "record" not in by_kind["malformed_json"]
    out = capsys.readouterr().out
    assert f"  {'skipped/malformed_json':32s} 14\n" in out


def test_report_shows_n_per_kind_and_counts_the_rest(dirty, tmp_path, capsys):
    _, path, expected = dirty
    errors, rep_json = tmp_path / "bad.jsonl", tmp_path / "rep.json"
    argv = ["--format", "llava", str(path), "--max-tokens", str(MAX_TOKENS), "--show", "3"]
    assert _cli([*argv, "--errors", str(errors), "--json", str(rep_json)]) == 0
    out = capsys.readouterr().out.splitlines()
    totals = {}
    for _, kind, _ in expected:
        totals[kind] = totals.get(kind, 0) + 1
    for kind, total in totals.items():
        head = out.index(f"  {kind} ({total}):")
        first = [(line, img) for line, k, img in expected if k == kind][:3]
        listed = out[head + 1 : head + 1 + len(first)]
        for ln, (line, img) in zip(listed, first, strict=True):
            tail = f" image[{img}] (" if img is not None else ": "
            assert ln.startswith(f"    {path}:{line}{tail}"), ln
        nxt = out[head + 1 + len(first)]
        if total > 3:
            assert nxt == f"    ... and {total - 3} more (all in {errors})"
        else:
            assert not nxt.startswith("    ")
    rep = json.loads(rep_json.read_text())
    assert rep["errors_more"] == {k: max(0, v - 3) for k, v in totals.items()}
    assert all(len(v) == min(3, totals[k]) for k, v in rep["errors_shown"].items())


def test_show_zero_prints_only_totals(dirty, capsys):
    _, path, _ = dirty
    argv = ["--format", "llava", str(path), "--max-tokens", str(MAX_TOKENS), "--show", "0"]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "  malformed_json (14):\n    ... and 14 more\n" in out
    with pytest.raises(SystemExit):
        _cli(["--format", "llava", str(path), "--show", "-1"])


def test_exit_status_unchanged(tmp_path):
    all_bad, empty = tmp_path / "bad.jsonl", tmp_path / "empty.jsonl"
    all_bad.write_text("{x\n" * 5)
    empty.write_text("\n")
    assert _cli(["--format", "llava", str(all_bad), "--errors", str(tmp_path / "e.jsonl")]) == 1
    assert len(_read_jsonl(tmp_path / "e.jsonl")) == 5
    assert _cli(["--format", "llava", str(empty), "--errors", str(tmp_path / "e.jsonl")]) == 0
    assert _read_jsonl(tmp_path / "e.jsonl") == []  # rewritten, not appended to


def test_json_list_and_interleaved_use_record_index_and_empty_sample(tmp_path):
    recs = [{"text": "a <image>", "images": []}, {"text": ""}, {"text": "fine"}, {"images": []}]
    (tmp_path / "docs.json").write_text(json.dumps(recs))
    errors = tmp_path / "e.jsonl"
    argv = ["--format", "interleaved", str(tmp_path / "docs.json"), "--errors", str(errors)]
    assert _cli(argv) == 0
    got = [(e["file"], e["record"], e["kind"]) for e in _read_jsonl(errors)]
    f = str(tmp_path / "docs.json")
    assert got == [(f, 0, "image_tag_mismatch"), (f, 1, "empty_sample"), (f, 3, "missing_field")]


def test_arrayrecord_bad_records_name_their_file_and_record(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    good = Sample([Message("user", "hi"), Message("assistant", "there")])
    write_arrayrecord(tmp_path / "a.arrayrecord", [good] * 3)
    w = ArrayRecordWriter(str(tmp_path / "b.arrayrecord"), "group_size:1")
    for rec in [b"{bad", json.dumps({"messages": [], "images": []}).encode(), b"{}", b"[]"]:
        w.write(rec)
    w.close()
    src = open_dataset("arrayrecord", [tmp_path / "a.arrayrecord", tmp_path / "b.arrayrecord"])
    log = BadRecordLog(tmp_path / "e.jsonl")
    with log:
        rep = inspect_source(src, SampleEncoder(TextTokenizer.default(), EncodeSpec()), log=log)
    b = str(tmp_path / "b.arrayrecord")
    assert rep["counts"]["ok"] == 3
    assert [(e["file"], e["record"], e["kind"]) for e in _read_jsonl(tmp_path / "e.jsonl")] == [
        (b, 0, "malformed_record"),
        (b, 1, "empty_sample"),  # no messages: nothing to template
        (b, 2, "malformed_record"),
        (b, 3, "malformed_record"),
    ]
    with pytest.raises(DataError, match=r"b\.arrayrecord#2: malformed_record"):
        src[5]


class _ArraySource:
    """In-memory samples with array images; raises a non-data error at `crash_at`."""

    def __init__(self, images, crash_at=None, watch=None):
        self.images, self.crash_at, self.watch, self.seen_at_crash = images, crash_at, watch, None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.crash_at:
            self.seen_at_crash = self.watch.read_text()
            raise RuntimeError("reader died")
        ims = self.images[i]
        return Sample([Message("user", "<image>" * len(ims) + "q"), Message("assistant", "a")], ims)


def test_in_memory_image_kinds_and_fallback_location():
    """Array/PIL images: bad arrays, unsupported modes, over the patch budget; no `locate`."""
    ok = np.zeros((28, 28, 3), np.uint8)
    src = _ArraySource(
        [
            [ok],
            [ok, np.zeros((28, 28), np.float32)],
            [np.zeros((28, 28, 3, 1), np.uint8)],
            [Image.new("RGBX", (28, 28))],
            [np.zeros((4, 800, 3), np.uint8)],  # aspect 200: > 16 patches at any size
        ]
    )
    log = BadRecordLog(show=10)
    spec = EncodeSpec(max_patches=16)
    rep = inspect_source(src, SampleEncoder(TextTokenizer.default(), spec), log=log)
    got = [(e["kind"], e["file"], e["record"], e["image"]) for v in log.shown.values() for e in v]
    assert sorted(got) == [
        ("bad_image_array", "_ArraySource", 1, 1),
        ("bad_image_array", "_ArraySource", 2, 0),
        ("image_over_budget", "_ArraySource", 4, 0),
        ("unsupported_mode", "_ArraySource", 3, 0),
    ]
    assert rep["counts"]["ok"] == 1
    assert not any("image_path" in e for v in log.shown.values() for e in v)


def test_errors_are_on_disk_as_found_and_survive_a_crash(tmp_path):
    errors = tmp_path / "e.jsonl"
    bad = np.zeros((28, 28), np.float32)
    src = _ArraySource([[bad], [np.zeros((28, 28, 3), np.uint8)], [bad], [bad]], 3, errors)
    with pytest.raises(RuntimeError, match="reader died"), BadRecordLog(errors) as log:
        inspect_source(src, SampleEncoder(TextTokenizer.default(), EncodeSpec()), log=log)
    # what was on disk while the run was still going: both bad records, whole lines
    assert [json.loads(x)["record"] for x in src.seen_at_crash.splitlines(keepends=True)] == [0, 2]
    assert src.seen_at_crash.endswith("\n")
    assert [e["record"] for e in _read_jsonl(errors)] == [0, 2]


def test_image_index_survives_pickling_and_inner_tag_wins():
    err = DataError("f.jsonl:3 image[2]", "corrupt_image", "bad", image=2)
    back = pickle.loads(pickle.dumps(err))
    assert (back.origin, back.reason, back.detail, back.image) == (err.origin, err.reason, "bad", 2)
    with pytest.raises(DataError) as e, at_image(5):
        with at_image(1):
            raise DataError("x", "missing_image", "y")
    assert e.value.image == 1
