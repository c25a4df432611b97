"""The agent JSONL format: synthetic samples written and read back give the same targets; a call
that breaks the schema is a DataError naming the line."""

import json

import pytest

from andesvl_jax.agent.jsonl import open_agent_jsonl, write_agent_jsonl
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.formats import FORMATS
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext


def test_round_trip(tmp_path):
    src = SyntheticSource({"agent_train": 1.0}, size=12, seed=5, ctx=TaskContext(56, 56))
    samples = [src[i] for i in range(12)]
    path = tmp_path / "agent.jsonl"
    write_agent_jsonl(samples, path)
    back = FORMATS["agent_jsonl"](path)
    assert len(back) == 12
    for a, b in zip(samples, (back[i] for i in range(12)), strict=True):
        assert b.messages[1].content == a.messages[1].content
        assert b.meta["call"] == a.meta["call"] and b.messages[0].content == a.messages[0].content


def test_schema_breaking_record_names_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    rec = {
        "image": "x.png",
        "request": "buy",
        "call": {"function": "amazon_shopping", "arguments": {"product": "vase", "quantity": 1}},
    }
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1.*not one of"):
        open_agent_jsonl(path)[0]
