"""Benchmark readers on small hand-made files: prompts, meta, box conversion and bad input."""

import base64
import csv
import io
import json

import pytest
from PIL import Image

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.images import load_rgb
from andesvl_jax.eval.metrics import evaluate_predictions
from andesvl_jax.eval.readers import READERS, read_benchmark


def png_bytes(w=8, h=6, colour=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def b64_png(**kw) -> str:
    return base64.b64encode(png_bytes(**kw)).decode()


def write_tsv(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def reference_scores(bench) -> dict:
    """Each sample's own reference answer, scored by the sample's metric: must be perfect."""
    metric = bench[0].meta["metric"]
    return evaluate_predictions(metric, [s.answer for s in bench], [s.meta for s in bench])


# ---- VLMEvalKit TSV ----

MCQ_COLUMNS = ["index", "image", "question", "hint", "A", "B", "C", "answer", "category"]


@pytest.fixture
def mcq_tsv(tmp_path):
    img = b64_png()
    rows = [
        [0, img, "What animal?", "Look closely.", "cat", "dog", "", "B", "animals"],
        [1, "0", "Which colour?", "", "red", "blue", "green", "a", "colours"],  # reuses row 0
    ]
    return write_tsv(tmp_path / "MMBench_DEV_EN.tsv", MCQ_COLUMNS, rows)


def test_tsv_multiple_choice_prompt_and_meta(mcq_tsv):
    bench = read_benchmark("vlmeval_tsv", mcq_tsv)
    assert len(bench) == 2 and bench.stats.to_json() == {"ok": 2}
    first, second = bench
    assert first.prompt[0].content == (
        "<image>\nHint: Look closely.\nQuestion: What animal?\nOptions:\nA. cat\nB. dog\n"
        "Please select the correct answer from the options above."
    )
    assert "Hint:" not in second.prompt[0].content  # empty hint cell: no hint line
    assert second.prompt[0].content.endswith(
        "C. green\nPlease select the correct answer from the options above."
    )
    assert first.meta == {
        "benchmark": "MMBench_DEV_EN",
        "index": 0,
        "task": "multiple_choice",
        "metric": "mmbench_circular",
        "question": "What animal?",
        "category": "animals",
        "image_group": "0",
        "options": {"A": "cat", "B": "dog"},
        "answer": "B",
    }
    assert second.meta["answer"] == "A" and first.answer == "B"
    assert first.origin.endswith("MMBench_DEV_EN.tsv:2 [index=0]")
    assert second.images[0] == first.images[0]  # the index reference resolved to row 0's image
    assert load_rgb(second.images[0]).size == (8, 6)
    assert reference_scores(bench)["overall"]["score"] == 1.0


def test_tsv_yes_no_and_short_answer(tmp_path):
    img = b64_png()
    pope = write_tsv(
        tmp_path / "POPE.tsv",
        ["index", "image", "question", "answer", "category"],
        [
            [1, img, "Is there a dog in the image?", "Yes", "random"],
            [2, img, "Is there a cat?", "no", "random"],
        ],
    )
    bench = read_benchmark("vlmeval_tsv", pope)
    assert (
        bench[0].prompt[0].content
        == "<image>\nIs there a dog in the image? Please answer yes or no."
    )
    assert bench[0].meta["metric"] == "pope" and bench[0].meta["answer"] == "yes"
    assert reference_scores(bench)["overall"]["f1"] == 1.0

    mme = write_tsv(
        tmp_path / "MME.tsv",
        ["index", "image", "question", "answer"],
        [[7, img, "Is this red? Please answer yes or no.", "Yes"]],
    )
    assert read_benchmark("vlmeval_tsv", mme)[0].prompt[0].content.count("Please answer yes") == 1

    answers = str(["two", "2", "2 dogs"])
    vqa = write_tsv(
        tmp_path / "TextVQA_VAL.tsv",
        ["index", "image", "question", "answer"],
        [[3, img, "How many dogs?", answers]],
    )
    sample = read_benchmark("vlmeval_tsv", vqa)[0]
    assert sample.prompt[0].content == (
        "<image>\nHow many dogs?\nAnswer the question using a single word or phrase."
    )
    assert (
        sample.meta["answers"] == ["two", "2", "2 dogs"] and sample.meta["metric"] == "vqa_accuracy"
    )

    chart = write_tsv(
        tmp_path / "ChartQA_TEST.tsv",
        ["index", "image", "question", "answer"],
        [[4, img, "What is the peak?", "5.0"]],
    )
    assert read_benchmark("vlmeval_tsv", chart)[0].meta["metric"] == "relaxed_accuracy"
    # An unknown benchmark name: the task comes from the columns; overrides win.
    other = read_benchmark("vlmeval_tsv", chart, benchmark="MyCharts", metric="anls")
    assert (other[0].meta["task"], other[0].meta["metric"]) == ("short_answer", "anls")


def test_tsv_image_path_column_and_multi_image(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png_bytes())
    (tmp_path / "imgs" / "b.png").write_bytes(png_bytes(colour=(0, 0, 255)))
    tsv = write_tsv(
        tmp_path / "custom.tsv",
        ["index", "image_path", "question", "answer"],
        [[0, "imgs/a.png", "Q?", "yes"], [1, str(["imgs/a.png", "imgs/b.png"]), "Q2?", "no"]],
    )
    bench = read_benchmark("vlmeval_tsv", tsv)
    assert bench[0].meta["task"] == "yes_no"  # only yes/no answers in the file
    assert bench[1].prompt[0].content.startswith("<image>\n<image>\nQ2?")
    assert bench[1].images == [str(tmp_path / "imgs" / "a.png"), str(tmp_path / "imgs" / "b.png")]


def test_tsv_missing_column_names_file_and_columns(tmp_path):
    tsv = write_tsv(tmp_path / "bad.tsv", ["index", "image", "question"], [[0, b64_png(), "q"]])
    with pytest.raises(
        ValueError,
        match=r"bad\.tsv: missing column\(s\) \['answer'\]; "
        r"columns found: \['index', 'image', 'question'\]",
    ):
        read_benchmark("vlmeval_tsv", tsv)
    assert len(read_benchmark("vlmeval_tsv", tsv, require_answer=False)) == 1
    no_image = write_tsv(tmp_path / "noimg.tsv", ["index", "question", "answer"], [[0, "q", "a"]])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['image \(or image_path\)'\]"):
        read_benchmark("vlmeval_tsv", no_image)


def test_tsv_bad_rows_raise_with_location_or_are_counted_skips(tmp_path):
    good = b64_png()
    rows = [
        [0, good, "ok?", "cat", "dog", "A"],
        [1, "!!not base64!!" * 8, "bad b64", "cat", "dog", "A"],
        [2, base64.b64encode(b"not an image at all" * 5).decode(), "not png", "cat", "dog", "B"],
        [3, "99", "dangling ref", "cat", "dog", "A"],
        [4, good, "answer not an option", "cat", "dog", "E"],
        [4, good, "repeated index", "cat", "dog", "A"],
    ]
    tsv = write_tsv(tmp_path / "rows.tsv", ["index", "image", "question", "A", "B", "answer"], rows)
    with pytest.raises(DataError, match=r"rows\.tsv:3 \[index=1\]: bad_base64: column 'image'"):
        read_benchmark("vlmeval_tsv", tsv)
    bench = read_benchmark("vlmeval_tsv", tsv, on_error="skip")
    assert len(bench) == 1
    assert bench.stats.to_json() == {
        "ok": 1,
        "skipped/bad_answer": 1,
        "skipped/bad_base64": 1,
        "skipped/bad_image_ref": 1,
        "skipped/bad_index": 1,
        "skipped/corrupt_image": 1,
    }
    report = bench.report()
    assert report["samples"] == 1 and len(report["skipped"]) == 5
    assert report["skipped"][1].startswith(f"{tsv}:4 [index=2]: corrupt_image: column 'image'")


def test_reader_argument_errors(mcq_tsv):
    with pytest.raises(KeyError, match="benchmark format 'csv' unknown"):
        read_benchmark("csv", mcq_tsv)
    with pytest.raises(ValueError, match="on_error='ignore' unknown"):
        read_benchmark("vlmeval_tsv", mcq_tsv, on_error="ignore")
    with pytest.raises(ValueError, match="metric 'bleu' unknown"):
        read_benchmark("vlmeval_tsv", mcq_tsv, metric="bleu")
    with pytest.raises(FileNotFoundError):
        read_benchmark("vlmeval_tsv", mcq_tsv.parent / "nope.tsv")
    assert sorted(READERS) == ["andesui", "screenspot", "vlmeval_tsv"]


# ---- AndesUI ----


@pytest.fixture
def ui_dir(tmp_path):
    (tmp_path / "screens").mkdir()
    Image.new("RGB", (200, 100), (240, 240, 240)).save(tmp_path / "screens" / "home.png")
    return tmp_path


def test_andesui_three_tasks(ui_dir):
    records = [
        {
            "image": "screens/home.png",
            "task": "grounding",
            "bbox": [20, 10, 100, 50],
            "description": "the search button",
            "category": "home",
        },
        {
            "image": "screens/home.png",
            "task": "referring",
            "bbox": [20, 10, 100, 50],
            "description": "search button",
            "id": "r-1",
        },
        {
            "image": "screens/home.png",
            "task": "qa",
            "bbox": [0, 0, 201, 100],
            "question": "Where do I tap to search?",
        },
    ]
    (ui_dir / "andesui.json").write_text(json.dumps(records))
    bench = read_benchmark("andesui", ui_dir / "andesui.json")
    grounding, referring, qa = bench
    assert grounding.meta["box"] == [100, 100, 500, 500]  # pixels on a 200x100 image -> 0-1000
    assert grounding.meta["metric"] == "grounding" and grounding.meta["category"] == "home"
    assert grounding.answer == "<|box_start|>(100,100),(500,500)<|box_end|>"
    assert "the search button" in grounding.prompt[0].content
    assert grounding.images == [str(ui_dir / "screens" / "home.png")]
    assert "<|box_start|>(100,100),(500,500)<|box_end|>" in referring.prompt[0].content
    assert referring.meta["metric"] == "andesui_referring" and referring.meta["index"] == "r-1"
    assert referring.answer == "search button" and referring.meta["answer"] == "search button"
    assert qa.meta["box"] == [0, 0, 1000, 1000]  # the 1 px overshoot is clamped
    assert qa.meta["index"] == 2 and qa.prompt[0].content.startswith("<image>\nWhere do I tap")
    for s in bench:
        out = evaluate_predictions(s.meta["metric"], [s.answer], [s.meta])["overall"]
        assert out["score"] == 1.0


def test_andesui_bad_records(ui_dir):
    records = [
        {
            "image": "screens/home.png",
            "task": "grounding",
            "bbox": [20, 10, 100, 50],
            "description": "ok",
        },
        {
            "image": "screens/missing.png",
            "task": "grounding",
            "bbox": [0, 0, 5, 5],
            "description": "x",
        },
        {
            "image": "screens/home.png",
            "task": "grounding",
            "bbox": [50, 10, 20, 50],
            "description": "x",
        },
        {"image": "screens/home.png", "task": "swipe", "bbox": [0, 0, 5, 5]},
        {"image": "screens/home.png", "task": "qa", "bbox": [0, 0, 5, 5]},
        {"image": "screens/home.png", "bbox": [0, 0, 5, 5], "description": "no task"},
    ]
    path = ui_dir / "bad.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"bad\.json#1: missing_image: image file not found"):
        read_benchmark("andesui", path)
    bench = read_benchmark("andesui", path, on_error="skip")
    assert bench.stats.to_json() == {
        "ok": 1,
        "skipped/bad_box": 1,
        "skipped/bad_task": 2,
        "skipped/missing_field": 1,
        "skipped/missing_image": 1,
    }
    assert "'question'" in bench.report()["skipped"][3]
    assert len(read_benchmark("andesui", path, task="grounding", on_error="skip")) == 2
    path.write_text('{"not": "a list"}')
    with pytest.raises(DataError, match="malformed_json: expected a JSON list"):
        read_benchmark("andesui", path)


def test_andesui_jsonl_lines(ui_dir):
    rec = {"image": "screens/home.png", "bbox": [0, 0, 100, 100], "description": "left half"}
    path = ui_dir / "ui.jsonl"
    path.write_text(json.dumps(rec) + "\n\n{broken\n")
    with pytest.raises(DataError, match=r"ui\.jsonl:3: malformed_json"):
        read_benchmark("andesui", path, task="referring")
    path.write_text("\n" + json.dumps(rec) + "\n")
    sample = read_benchmark("andesui", path, task="referring")[0]
    assert sample.meta["index"] == 2 and sample.origin.endswith("ui.jsonl:2")


# ---- ScreenSpot ----


def test_screenspot_boxes_fallback_folder_and_errors(tmp_path):
    (tmp_path / "screenspot_imgs").mkdir()
    Image.new("RGB", (200, 100)).save(tmp_path / "screenspot_imgs" / "mobile_1.png")
    records = [
        {
            "img_filename": "mobile_1.png",
            "bbox": [20, 10, 80, 40],
            "instruction": "open settings",
            "data_type": "icon",
            "data_source": "ios",
        },
        {
            "img_filename": "mobile_1.png",
            "bbox": [20, 10, 0, 40],
            "instruction": "zero width",
            "data_type": "text",
            "data_source": "ios",
        },
        {"img_filename": "mobile_1.png", "bbox": [20, 10, 80, 40], "data_type": "text"},
        {"img_filename": "gone.png", "bbox": [1, 1, 2, 2], "instruction": "x"},
    ]
    path = tmp_path / "screenspot_mobile.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"screenspot_mobile\.json#1: bad_box"):
        read_benchmark("screenspot", path)
    bench = read_benchmark("screenspot", path, on_error="skip")
    assert bench.name == "ScreenSpot_screenspot_mobile"
    assert bench.stats.to_json() == {
        "ok": 1,
        "skipped/bad_box": 1,
        "skipped/missing_field": 1,
        "skipped/missing_image": 1,
    }
    sample = bench[0]
    assert sample.meta["box"] == [100, 100, 500, 500]  # [x, y, w, h] -> corners -> 0-1000
    assert sample.meta["box_pixels"] == [20, 10, 100, 50]
    assert (sample.meta["category"], sample.meta["data_source"]) == ("icon", "ios")
    assert "open settings" in sample.prompt[0].content
    assert sample.images == [str(tmp_path / "screenspot_imgs" / "mobile_1.png")]
    assert reference_scores(bench)["per_category"]["icon"]["score"] == 1.0
    # The model's click inside the element counts; one outside does not.
    out = evaluate_predictions("grounding", ["(300,300)", "(600,300)"], [sample.meta] * 2)
    assert out["overall"]["score"] == 0.5
