"""TfdsSource on a tiny TFDS dataset prepared here (array_record files, no TensorFlow needed).

The builder hands tfds.features.Image encoded PNG bytes, so preparation never calls TensorFlow's
image encoder; tfds.data_source then reads the ArrayRecord files back with PIL decoding.
"""

import io
import json

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from andesvl_jax.data.formats import TfdsSource, open_dataset  # noqa: E402
from andesvl_jax.data.inspect_cli import register  # noqa: E402
from andesvl_jax.data.pipeline import DataConfig, make_dataset, pipeline_stats  # noqa: E402

N = 5


def _png(i: int) -> bytes:
    img = np.full((28 + 14 * i, 42, 3), 40 * i, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


class AndesTinyVqa(tfds.core.GeneratorBasedBuilder):
    """N VQA records: image i is (28 + 14 i) x 42 of grey level 40 i; question/answer name i."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(None, None, 3)),
                "question": tfds.features.Text(),
                "answer": tfds.features.Text(),
                "id": np.int64,
            }
        )
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(N)}

    def _generate_examples(self, n):
        for i in range(n):
            yield (
                i,
                {"image": _png(i), "question": f"What is {i}?", "answer": f"It is {i}.", "id": i},
            )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    AndesTinyVqa(data_dir=str(d), file_format="array_record").download_and_prepare()
    return d


def test_reader_maps_records_to_samples(data_dir):
    src = TfdsSource("andes_tiny_vqa", split="train", data_dir=str(data_dir))
    assert len(src) == N
    seen = set()
    for k in range(N):
        s = src[k]
        i = int(s.messages[1].content.split()[-1].rstrip("."))
        seen.add(i)
        assert s.messages[0].role == "user" and s.messages[0].content == f"<image>\nWhat is {i}?"
        assert s.messages[1].role == "assistant" and s.messages[1].content == f"It is {i}."
        (img,) = s.images
        assert img.dtype == np.uint8 and img.shape == (28 + 14 * i, 42, 3) and (img == 40 * i).all()
        assert s.origin == f"tfds:andes_tiny_vqa/train#{k}"
    assert seen == set(range(N))


def test_missing_question_becomes_caption_and_pipeline_packs(data_dir):
    src = open_dataset(
        "tfds", "andes_tiny_vqa:train", data_dir=str(data_dir), question_key="caption"
    )
    assert src[0].messages[0].content == "<image>\nDescribe the image."
    cfg = DataConfig(stage="sft", batch_size=2, max_tokens=512, max_patches=512, num_epochs=1)
    it = iter(make_dataset(src, cfg))
    batches = list(it)
    assert batches and pipeline_stats(it.get_state())["ok"] == N


def test_missing_answer_is_a_named_error(data_dir):
    src = TfdsSource("andes_tiny_vqa", data_dir=str(data_dir), answer_key="label")
    with pytest.raises(ValueError, match=r"tfds:andes_tiny_vqa/train#0: missing_field"):
        src[0]


def test_inspect_cli_reads_tfds(data_dir, tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "rep.json"
    args = parser.parse_args(
        [
            "data",
            "inspect",
            "--format",
            "tfds",
            "andes_tiny_vqa:train",
            "--data-dir",
            str(data_dir),
            "--json",
            str(out),
        ]
    )
    assert args.func(args) == 0
    assert json.loads(out.read_text())["counts"]["ok"] == N
