"""Weighted mixtures of real datasets (data/mixture.py) and their use by a training run."""

import json

import numpy as np
import pytest
from PIL import Image

from andesvl_jax.data.mixture import MixtureSource, open_mixture


def write_llava(path, n: int, answer: str):
    records = [
        {
            "image": "a.png",
            "conversations": [
                {"from": "human", "value": f"<image>\nQuestion {i}?"},
                {"from": "gpt", "value": f"{answer}{i}"},
            ],
        }
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")


@pytest.fixture
def two_sets(tmp_path):
    Image.new("RGB", (56, 56), (200, 10, 10)).save(tmp_path / "a.png")
    write_llava(tmp_path / "big.jsonl", 30, "big")
    write_llava(tmp_path / "small.jsonl", 4, "small")
    return tmp_path


def spec(d, small_weight=3.0):
    return {
        "big": {"format": "llava", "path": str(d / "big.jsonl"), "weight": 1.0},
        "small": {"format": "llava", "path": str(d / "small.jsonl"), "weight": small_weight},
    }


def test_weights_set_the_shares_and_small_sets_repeat(two_sets):
    mix = open_mixture(spec(two_sets), size=400, seed=1)
    assert mix.shares()["small"] == pytest.approx(0.75, abs=0.06)
    answers = [mix[i].messages[-1].content for i in range(len(mix))]
    small = [a for a, s in zip(answers, mix.which, strict=True) if mix.names[s] == "small"]
    assert small[:9] == [
        "small0",
        "small1",
        "small2",
        "small3",
        "small0",
        "small1",
        "small2",
        "small3",
        "small0",
    ]  # in order, then a new epoch
    assert {mix[i].meta["source"] for i in range(20)} == {"big", "small"}
    again = open_mixture(spec(two_sets), size=400, seed=1)
    np.testing.assert_array_equal(again.which, mix.which)  # deterministic in the seed


def test_bad_mixture_entries_say_what_is_wrong(two_sets):
    with pytest.raises(ValueError, match="weight must be > 0"):
        open_mixture(spec(two_sets, small_weight=0.0))
    with pytest.raises(ValueError, match=r"data.sources.x: needs format and path"):
        open_mixture({"x": {"path": "p.jsonl"}})
    with pytest.raises(ValueError, match="weights for"):
        MixtureSource({"a": [1]}, {"b": 1.0})


def test_a_run_trains_on_a_weighted_mixture(two_sets, tmp_path):
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train

    overrides = ["--config.steps=2", "--config.data.batch_size=8", "--config.data.worker_count=0"]
    config = load_config("experiments/tiny.py:stage=sft", overrides)
    config.update(progress=False, tensorboard=False)
    config.data.sources = spec(two_sets)
    summary = train(config, tmp_path / "run")
    assert summary["stop_reason"] == "completed"
    assert summary["data"]["ok"] >= 8
