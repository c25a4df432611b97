"""`data inspect` bad-record log on TFDS: every record located as tfds:name/split + record index."""

import json

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from test_tfds import AndesTinyVqa, N  # noqa: E402  (the tiny builder, prepared again here)

from andesvl_jax.data.encode import EncodeSpec, SampleEncoder  # noqa: E402
from andesvl_jax.data.error_log import BadRecordLog  # noqa: E402
from andesvl_jax.data.formats import TfdsSource  # noqa: E402
from andesvl_jax.data.inspect_cli import inspect_source  # noqa: E402
from andesvl_jax.data.tokenizer import TextTokenizer  # noqa: E402


def test_tfds_bad_records_are_located_by_split_and_index(tmp_path):
    AndesTinyVqa(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    src = TfdsSource("andes_tiny_vqa", data_dir=str(tmp_path), answer_key="label")  # no 'label'
    with BadRecordLog(tmp_path / "e.jsonl", show=2) as log:
        rep = inspect_source(src, SampleEncoder(TextTokenizer.default(), EncodeSpec()), log=log)
    assert rep["counts"] == {"skipped/missing_field": N}
    lines = (tmp_path / "e.jsonl").read_text().splitlines()
    assert [json.loads(x)["record"] for x in lines] == list(range(N))
    assert all('"file": "tfds:andes_tiny_vqa/train"' in x for x in lines)
    assert len(log.shown["missing_field"]) == 2 and log.more("missing_field") == N - 2
