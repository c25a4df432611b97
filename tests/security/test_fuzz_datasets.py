"""Hostile datasets (data/formats/): JSONL with mutated, torn and mistyped lines, .json lists,
ArrayRecord records and files, TFDS records, image paths that try to leave the image root.

Each record is encoded as the trainer would (`SampleEncoder`: images decoded and preprocessed, chat
template, budgets): accepted, or a DataError naming file:line / file#record (what `data inspect`
and on_error='skip' count and report) — never another exception.
"""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
from fuzzlib import examples, mutated, run_case
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.errors import DataError, Skipped, SkipStats, apply_policy
from andesvl_jax.data.formats import (
    ArrayRecordSource,
    JsonlSource,
    TfdsSource,
    llava_to_sample,
    preference_to_sample,
    write_arrayrecord,
)
from andesvl_jax.data.formats.arrayrecord import record_to_sample, sample_to_record
from andesvl_jax.data.preprocess import ImageSpec
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer

ENCODER = SampleEncoder(
    TextTokenizer.default(),
    EncodeSpec(image=ImageSpec(max_size=112), max_tokens=512, max_patches=256),
)


def _png(w=20, h=16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/ with ok.png, a symlink pointing out of root, a subfolder; outside.png beside root."""
    base = tmp_path_factory.mktemp("ds")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ok.png").write_bytes(_png())
    (root / "sub" / "ok2.png").write_bytes(_png(30, 10))
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (base / "outside.png").write_bytes(_png())
    os.symlink(base / "outside.png", root / "link_out.png")
    os.symlink(root / "ok.png", root / "link_in.png")
    return root


IMAGE_VALUES = [
    "ok.png",
    "sub/ok2.png",
    "link_in.png",
    "sub/../ok.png",
    "../outside.png",
    "../../../../etc/passwd",
    "/etc/passwd",
    "link_out.png",
    "missing.png",
    "bad.png",
    "a\x00b.png",
    "",
    ".",
    123,
    None,
    ["ok.png", "ok.png"],
    ["ok.png", 5],
    {"path": "ok.png"},
]
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["<image>\nWhat?", "<image><image>", "<|im_end|><|im_start|>x", "\ud800"]),
)
TURN = st.one_of(
    st.fixed_dictionaries(
        {"from": st.sampled_from(["human", "gpt", "system", "robot", 3]), "value": TEXT}
    ),
    st.sampled_from([{}, [], "x", {"from": "human"}, {"value": "v"}, None]),
)


@st.composite
def llava_lines(draw, images):
    rec = {
        "image": draw(st.sampled_from(images)),
        "conversations": draw(
            st.one_of(
                st.lists(TURN, max_size=4),
                st.sampled_from(["not a list", None, 5, {"a": 1}]),
            )
        ),
    }
    if draw(st.integers(0, 5)) == 0:
        del rec[draw(st.sampled_from(sorted(rec)))]
    line = json.dumps(rec).encode()
    if draw(st.integers(0, 3)) == 0:
        line = draw(mutated(line))
    return line.replace(b"\n", b" ")


def _encode_all(src, reader: str, where: str) -> None:
    for i in range(len(src)):
        run_case(reader, lambda i=i: ENCODER(src[i]), where=where)


@given(
    lines=st.lists(llava_lines(IMAGE_VALUES), min_size=1, max_size=6),
    torn=st.booleans(),
    blank=st.booleans(),
)
@examples(60)
def test_hostile_jsonl(tree, lines, torn, blank):
    path = tree / "d.jsonl"
    text = b"\n".join(lines) + b"\n"
    if blank:
        text = b"\n\n" + text
    if torn:  # the half-written last line of a crashed writer
        text = text[: max(1, len(text) - 1 - len(lines[-1]) // 2)]
    path.write_bytes(text)
    src = run_case("jsonl", lambda: JsonlSource(path, llava_to_sample, tree), where="d.jsonl")
    if not isinstance(src, DataError):
        _encode_all(src, "jsonl", "d.jsonl:")


@given(data=st.data())
@examples(50)
def test_hostile_json_list(tree, data):
    recs = [
        {"prompt": "<image>\nQ", "images": ["ok.png"], "chosen": "a", "rejected": "b"}
    ] * data.draw(st.integers(1, 3))
    blob = json.dumps(recs).encode()
    kind = data.draw(st.sampled_from(["mutate", "deep", "notlist", "latin1", "nan"]))
    blob = {
        "mutate": lambda: data.draw(mutated(blob)),
        "deep": lambda: b"[" * 100_000 + b"]" * 100_000,
        "notlist": lambda: b'{"prompt": "x"}',
        "latin1": lambda: '[{"prompt": "caf\xe9"}]'.encode("latin-1"),
        "nan": lambda: b'[{"prompt": NaN, "images": [Infinity], "chosen": -Infinity}]',
    }[kind]()
    path = tree / "p.json"
    path.write_bytes(blob)
    src = run_case("json", lambda: JsonlSource(path, preference_to_sample, tree), where="p.json")
    if not isinstance(src, DataError):
        _encode_all(src, "json", "p.json")


@pytest.mark.parametrize(
    "value", ["../outside.png", "/etc/passwd", "link_out.png", "../../../../etc/passwd"]
)
def test_image_paths_cannot_escape_the_root(tree, value):
    path = tree / "esc.jsonl"
    rec = {"image": value, "conversations": [{"from": "human", "value": "<image>\nhi"}]}
    path.write_text(json.dumps(rec) + "\n")
    src = JsonlSource(path, llava_to_sample, tree)
    err = run_case("jsonl", lambda: src[0], where="esc.jsonl:1")
    assert isinstance(err, DataError) and err.reason == "path_outside_root", err


def test_paths_inside_the_root_still_work(tree):
    path = tree / "in.jsonl"
    for value in ["ok.png", "sub/../ok.png", "link_in.png", str(tree / "ok.png")]:
        rec = {"image": value, "conversations": [{"from": "human", "value": "<image>\nhi"}]}
        path.write_text(json.dumps(rec) + "\n")
        ENCODER(JsonlSource(path, llava_to_sample, tree)[0])


def test_torn_last_line_is_a_counted_reported_skip(tree):
    path = tree / "torn.jsonl"
    good = {"image": "ok.png", "conversations": [{"from": "human", "value": "<image>\nhi"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(good)[:25])
    src = JsonlSource(path, llava_to_sample, tree)
    stats = SkipStats()
    for i in range(len(src)):
        out = apply_policy("skip", lambda i=i: ENCODER(src[i]))
        if isinstance(out, Skipped):
            stats.add_skip(out)
            assert out.origin == f"{path}:2" and out.reason == "malformed_json"
        else:
            stats["ok"] += 1
    assert stats.to_json() == {"ok": 1, "skipped/malformed_json": 1}


def _sample(images: int = 1) -> Sample:
    return Sample(
        [Message("user", "<image>\n" * images + "hi"), Message("assistant", "yo")],
        [_png()] * images,
    )


B64 = base64.b64encode(_png()).decode()


@st.composite
def arrayrecord_records(draw):
    rec = json.loads(sample_to_record(_sample()))
    field = draw(st.sampled_from(["messages", "images", "kind", "meta", "none"]))
    hostile = [
        None,
        "x",
        5,
        [],
        {},
        [{"role": "robot", "content": "x"}],
        [{"role": "user", "content": 5}],
        ["not base64!!"],
        [B64[: len(B64) // 2]],
        [base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(40)).decode()],
        [B64, B64],
    ]
    if field != "none":
        rec[field] = draw(st.sampled_from(hostile))
    blob = json.dumps(rec).encode()
    if draw(st.integers(0, 2)) == 0:
        blob = draw(mutated(blob))
    return draw(st.sampled_from([blob, b"[1, 2]", b"\xff\xfe", blob]))


@given(blob=arrayrecord_records())
@examples(120)
def test_hostile_arrayrecord_records(blob):
    origin = "shard.arrayrecord#7"
    run_case(
        "arrayrecord", lambda: ENCODER(record_to_sample(blob, origin)), where="shard.arrayrecord#7"
    )


@pytest.fixture(scope="module")
def arrayrecord_seed(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ar") / "seed.arrayrecord"
    write_arrayrecord(path, [_sample() for _ in range(4)])
    return path.read_bytes()


@given(data=st.data())
@examples(40)
def test_mutated_arrayrecord_files(tmp_path, arrayrecord_seed, data):
    blob = data.draw(st.one_of(mutated(arrayrecord_seed), st.binary(max_size=64)))
    path = tmp_path / "m.arrayrecord"
    path.write_bytes(blob)

    def read_all():
        src = ArrayRecordSource(path)
        for i in range(len(src)):
            run_case("arrayrecord", lambda i=i: ENCODER(src[i]), where="m.arrayrecord#")

    run_case("arrayrecord", read_all, where="m.arrayrecord")


class _FakeTfds(TfdsSource):
    """TfdsSource's record mapping over given records (no prepared dataset needed)."""

    def __init__(self, records):
        self.args = dict(
            name="hostile", split="train", data_dir=None, image_key="image",
            question_key="question", answer_key="answer",
        )  # fmt: skip
        self._source = records


TFDS_VALUES = [
    np.zeros((8, 8, 3), np.uint8),
    np.zeros((2, 8, 8, 3), np.uint8),
    np.zeros((8, 8, 3), np.float32),
    np.zeros((8, 8, 3), np.int64),
    np.array(b"x"),
    [np.zeros((8, 8, 3), np.uint8), "x"],
    b"\xff\xfe",
    b"ok",
    np.array(b"\xff"),
    "text",
    None,
    7,
]


@st.composite
def tfds_records(draw):
    """A valid record with 0-2 features replaced or removed, or not a dict at all."""
    rec = {"image": TFDS_VALUES[0], "question": np.array(b"what?"), "answer": b"red"}
    for key in draw(st.lists(st.sampled_from(["image", "question", "answer", "x"]), max_size=2)):
        if draw(st.booleans()):
            rec[key] = draw(st.sampled_from(TFDS_VALUES))
        else:
            rec.pop(key, None)
    return draw(st.one_of(st.just(rec), st.sampled_from([None, [], "rec"])))


@given(rec=tfds_records())
@examples(60)
def test_hostile_tfds_records(rec):
    src = _FakeTfds([rec])
    run_case("tfds", lambda: ENCODER(src[0]), where="tfds:hostile/train#0")


def test_lone_surrogate_text_is_a_clear_error(tree):
    # Found by the fuzz suite at scale 10: JSON's "\ud800" escape decodes to a str that is not
    # Unicode, and the tokenizers library raised "TextInputSequence must be str".
    path = tree / "sur.jsonl"
    rec = {"conversations": [{"from": "human", "value": "hi \ud800"}, {"from": "gpt", "value": "x"}]}
    path.write_text(json.dumps(rec) + "\n")
    src = JsonlSource(path, llava_to_sample, tree)
    err = run_case("jsonl", lambda: ENCODER(src[0]), where="sur.jsonl:1")
    assert isinstance(err, DataError) and err.reason == "bad_text"
