"""Hostile benchmark files (eval/readers/): VLMEvalKit TSVs with broken base64, missing columns,
NUL bytes and non-UTF-8; AndesUI and ScreenSpot JSON with NaN/Inf boxes, wrong types, images that
are bombs or lie outside the image root. Rows: accepted, or a DataError naming file:line (under
on_error='skip' a counted, listed skip); file-level problems name the file."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from fuzzlib import PROJECT_ERRORS, count, examples, mutated, run_case
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from andesvl_jax.data.errors import DataError
from andesvl_jax.eval.readers import read_andesui, read_screenspot, read_vlmeval_tsv


def _png(w=40, h=30) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 9))


PNG_B64 = base64.b64encode(_png()).decode()
CELLS = [
    PNG_B64,
    PNG_B64[:-7],
    "not base64 at all!",
    base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode(),
    base64.b64encode(_bomb()).decode(),
    str([PNG_B64, PNG_B64]),
    "[" * 200 + "]" * 200,
    "['a'",
    "0",
    "999",
    "",
    "nan",
]
ROW_TEXT = st.one_of(
    st.sampled_from(["yes", "no", "A", "B", "maybe", "['x', 'y']", "[[[", "", "nan", "\x00"]),
    # any text a UTF-8 file can hold (no lone surrogates: they cannot be written)
    st.text(
        alphabet=st.characters(blacklist_characters="\t\n\r", blacklist_categories=("Cs",)),
        max_size=12,
    ),
)
COLUMN_SETS = [
    ["index", "image", "question", "answer"],
    ["index", "image", "question", "answer", "A", "B"],
    ["index", "image_path", "question", "answer"],
    ["index", "question", "answer"],
    ["image", "question"],
]


@st.composite
def tsv_files(draw):
    columns = draw(st.sampled_from(COLUMN_SETS))
    lines = ["\t".join(columns)]
    for i in range(draw(st.integers(0, 4))):
        cells = []
        for c in columns:
            if c == "index":
                cells.append(draw(st.sampled_from([str(i), str(i), "0", "", "x"])))
            elif c == "image":
                cells.append(draw(st.sampled_from(CELLS)))
            elif c == "image_path":
                cells.append(draw(st.sampled_from(["ok.png", "../x.png", "/etc/passwd", "no.png"])))
            else:
                cells.append(draw(ROW_TEXT))
        if draw(st.integers(0, 6)) == 0:
            cells = cells[: draw(st.integers(0, len(cells)))]  # a row with missing columns
        lines.append("\t".join(cells))
    blob = ("\n".join(lines) + "\n").encode()
    if draw(st.integers(0, 4)) == 0:
        blob = draw(mutated(blob, max_ops=2))
    return blob


def _read(reader, path, on_error, name):
    out = reader(path, on_error=on_error)
    count(f"{name} rows", "accepted", out.stats["ok"])
    if on_error == "skip":  # counted, listed skips: each one names the file
        assert len(out.skipped) == sum(v for k, v in out.stats.items() if k != "ok")
        assert all(str(path) in s.origin for s in out.skipped)
        count(f"{name} rows", "rejected", len(out.skipped))
    return out


@given(blob=tsv_files(), on_error=st.sampled_from(["raise", "skip"]))
@examples(150)
def test_hostile_vlmeval_tsv(tmp_path, blob, on_error):
    (tmp_path / "ok.png").write_bytes(_png())
    path = tmp_path / "Bench.tsv"
    path.write_bytes(blob)
    # A missing column is a ValueError naming the file and the columns (file-level, not a row).
    run_case(
        "vlmeval_tsv",
        lambda: _read(read_vlmeval_tsv, path, on_error, "vlmeval_tsv"),
        where="Bench.tsv",
        errors=(*PROJECT_ERRORS, ValueError),
    )


BOXES = [
    [1, 2, 20, 20],
    [0, 0, 40, 30],
    [5, 5, 5, 5],
    [float("nan"), 0, 10, 10],
    [0, 0, float("inf"), 10],
    [-float("inf"), 0, 10, 10],
    [1e308, 1e308, 1e308, 1e308],
    [1, 2, 3],
    ["1", 2, 3, 4],
    [True, 0, 5, 5],
    [100, 100, 200, 200],
    "box",
    None,
]
IMAGES = ["ok.png", "bomb.png", "junk.png", "../outside.png", "/etc/passwd", "nope.png", 5, None]


@st.composite
def gui_records(draw, keys, valid):
    """A valid record with 0-3 fields replaced by hostile values and 0-1 fields removed."""
    rec = dict(valid)
    for k in draw(st.lists(st.sampled_from(sorted(keys)), max_size=3)):
        rec[k] = draw(keys[k])
    for k in draw(st.lists(st.sampled_from(sorted(keys)), max_size=1)):
        rec.pop(k, None)
    return draw(st.one_of(st.just(rec), st.sampled_from([[], "x", None, 3])))


ANDESUI = {
    "image": st.sampled_from(IMAGES),
    "task": st.sampled_from(["grounding", "referring", "qa", "other", None, ["qa"], {}]),
    "bbox": st.sampled_from(BOXES),
    "description": st.one_of(st.text(max_size=10), st.none(), st.integers()),
    "question": st.one_of(st.text(max_size=10), st.none()),
    "id": st.one_of(st.integers(), st.text(max_size=4), st.none()),
}
SCREENSPOT = {
    "img_filename": st.sampled_from(IMAGES),
    "bbox": st.sampled_from(BOXES),
    "instruction": st.one_of(st.text(max_size=10), st.none(), st.integers()),
    "data_type": st.sampled_from(["text", "icon", None, 5]),
}


def _gui_tree(tmp_path):
    root = tmp_path / "gui"
    root.mkdir(exist_ok=True)
    (root / "ok.png").write_bytes(_png())
    (root / "bomb.png").write_bytes(_bomb())
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    (tmp_path / "outside.png").write_bytes(_png())
    return root


def _gui_file(root, name, recs, as_jsonl, data):
    path = root / (name + (".jsonl" if as_jsonl else ".json"))
    if as_jsonl:
        blob = b"\n".join(json.dumps(r).encode() for r in recs)
    else:
        blob = json.dumps(recs).encode()
    if data.draw(st.integers(0, 5)) == 0:
        blob = data.draw(mutated(blob, max_ops=2))
    path.write_bytes(blob)
    return path


VALID = {
    "andesui": {"image": "ok.png", "task": "grounding", "bbox": [1, 2, 20, 20], "description": "d"},
    "screenspot": {"img_filename": "ok.png", "bbox": [1, 2, 5, 5], "instruction": "tap"},
}


@pytest.mark.parametrize("reader,keys", [(read_andesui, ANDESUI), (read_screenspot, SCREENSPOT)])
@given(data=st.data())
@examples(80)
def test_hostile_gui_json(tmp_path, reader, keys, data):
    root = _gui_tree(tmp_path)
    name = reader.__name__.removeprefix("read_")
    recs = data.draw(st.lists(gui_records(keys, VALID[name]), max_size=4))
    path = _gui_file(root, "gui", recs, data.draw(st.booleans()), data)
    on_error = data.draw(st.sampled_from(["raise", "skip"]))
    out = run_case(name, lambda: _read(reader, path, on_error, name), where=path.name)
    if not isinstance(out, DataError):
        for s in out.samples:  # what was accepted is usable: an image inside the root, a box
            assert os.path.realpath(s.images[0]).startswith(os.path.realpath(root))
            assert all(0 <= v <= 1000 for v in s.meta["box"])


def test_gui_image_outside_the_root_is_refused(tmp_path):
    root = _gui_tree(tmp_path)
    rec = {"image": "../outside.png", "task": "grounding", "bbox": [1, 1, 9, 9], "description": "d"}
    (root / "g.json").write_text(json.dumps([rec]))
    err = run_case("andesui", lambda: read_andesui(root / "g.json"), where="g.json#0")
    assert isinstance(err, DataError) and err.reason == "path_outside_root"


PREDICTION = json.dumps({"index": 0, "prediction": "yes", "reference": "yes", "score": 1.0})


@given(data=st.data())
@examples(80)
def test_hostile_predictions_jsonl(tmp_path, data):
    """The predictions file a resumed evaluation reads back: bad lines are dropped and counted,
    the file rewritten with the good ones (so the next append starts on a clean line)."""
    from andesvl_jax.eval.runner import read_predictions

    lines = [PREDICTION.replace('"index": 0', f'"index": {i}').encode() for i in range(4)]
    blob = b"\n".join(lines) + b"\n"
    blob = data.draw(
        st.one_of(
            mutated(blob),
            st.sampled_from([b"\xff\xfe\n", b"[" * 100_000 + b"\n", b'{"index": 1e400}\n']),
        )
    )
    path = tmp_path / "bench.jsonl"
    path.write_bytes(blob)
    out = run_case("predictions_jsonl", lambda: read_predictions(path), where=None)
    records, dropped = out
    if dropped:  # repaired: bad lines dropped (counted) and the file rewritten
        count("predictions_jsonl", "accepted", -1)
        count("predictions_jsonl", "accepted_with_fix")
    kept = [json.loads(line) for line in path.read_bytes().splitlines() if line]
    assert len(kept) == len(records) and all(int(r["index"]) in records for r in kept)
    assert not path.read_bytes() or path.read_bytes().endswith(b"\n")  # appends start cleanly
