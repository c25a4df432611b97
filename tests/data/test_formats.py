"""Real formats: readers, bad lines with file:line errors, ArrayRecord round trip, data inspect."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.formats import open_dataset, write_arrayrecord
from andesvl_jax.data.inspect_cli import register
from andesvl_jax.data.pipeline import DataConfig, make_dataset, pipeline_stats
from andesvl_jax.data.synthetic import SyntheticSource


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    (d / "img").mkdir()
    Image.new("RGB", (90, 60), (200, 10, 10)).save(d / "img" / "a.jpg")
    Image.new("RGB", (64, 64), (10, 10, 200)).save(d / "img" / "b.png")
    (d / "img" / "trunc.jpg").write_bytes((d / "img" / "a.jpg").read_bytes()[:200])

    def conv(img, q):
        return {
            "image": img,
            "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": "ok"}],
        }

    lines = {
        "llava.jsonl": [
            conv("img/a.jpg", "<image>\nWhat?"),
            conv("img/b.png", "<image>\nAnd?"),
            "{not json",
            conv("img/missing.jpg", "<image>\nq"),
            conv("img/trunc.jpg", "<image>\nq"),
            conv("img/a.jpg", "no tag"),
            conv("img/a.jpg", "<image>" + "x" * 9000),
        ],
        "interleaved.jsonl": [
            {"text": "Look <image> then <image>.", "images": ["img/a.jpg", "img/b.png"]},
            {"text": "one tag <image>", "images": []},
        ],
        "preference.jsonl": [
            {
                "prompt": "<image>\nColour?",
                "images": ["img/a.jpg"],
                "chosen": "red",
                "rejected": "blue",
            },
            {"prompt": "q", "chosen": "x"},
        ],
        "rl.jsonl": [
            {"prompt": "<image>\n2+2?", "images": ["img/b.png"], "answer": 4},
            {"prompt": "no answer"},
        ],
    }
    for name, recs in lines.items():
        (d / name).write_text(
            "\n".join(r if isinstance(r, str) else json.dumps(r) for r in recs) + "\n"
        )
    write_arrayrecord(d / "syn.arrayrecord", [SyntheticSource("all", seed=0)[i] for i in range(6)])
    return d


EXPECT = {  # format -> (file, ok, {reason: count})
    "llava": (
        "llava.jsonl",
        2,
        {
            "malformed_json": 1,
            "missing_image": 1,
            "corrupt_image": 1,
            "image_tag_mismatch": 1,
            "text_too_long": 1,
        },
    ),
    "interleaved": ("interleaved.jsonl", 1, {"image_tag_mismatch": 1}),
    "preference": ("preference.jsonl", 1, {"missing_field": 1}),
    "rl": ("rl.jsonl", 1, {"missing_field": 1}),
    "arrayrecord": ("syn.arrayrecord", 6, {}),
}


@pytest.mark.parametrize("fmt", sorted(EXPECT))
def test_pipeline_skip_counts_per_format(data_dir, fmt):
    fname, ok, reasons = EXPECT[fmt]
    src = open_dataset(fmt, data_dir / fname)
    cfg = DataConfig(
        stage="sft", batch_size=2, max_tokens=4096, max_patches=4096, num_epochs=1, on_error="skip"
    )
    it = iter(make_dataset(src, cfg))
    list(it)
    stats = pipeline_stats(it.get_state())
    assert stats.get("ok", 0) == ok
    assert {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("skipped/")} == reasons


def test_errors_name_file_and_line(data_dir):
    src = open_dataset("llava", data_dir / "llava.jsonl")
    with pytest.raises(DataError, match=r"llava.jsonl:3: malformed_json"):
        src[2]
    sample = src[3]
    assert sample.origin.endswith("llava.jsonl:4")


def test_arrayrecord_round_trip(data_dir):
    src = open_dataset("arrayrecord", data_dir / "syn.arrayrecord")
    orig = SyntheticSource("all", seed=0)[3]
    back = src[3]
    assert back.messages == orig.messages and back.meta["task"] == orig.meta["task"]
    assert (
        np.array_equal(
            np.asarray(Image.open(__import__("io").BytesIO(back.images[0]))),
            np.asarray(orig.images[0]),
        )
        if orig.images
        else True
    )


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("fmt", sorted(EXPECT))
def test_inspect_cli(data_dir, fmt, capsys, tmp_path):
    fname, ok, reasons = EXPECT[fmt]
    out_json = tmp_path / "rep.json"
    rc = _run_cli(
        [
            "data",
            "inspect",
            "--format",
            fmt,
            str(data_dir / fname),
            "--image-root",
            str(data_dir),
            "--json",
            str(out_json),
        ]
    )
    assert rc == 0
    rep = json.loads(out_json.read_text())
    assert rep["counts"].get("ok", 0) == ok
    printed = capsys.readouterr().out
    assert "packing efficiency" in printed
    for reason in reasons:
        assert f"skipped/{reason}" in printed
