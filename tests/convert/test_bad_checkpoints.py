"""Bad checkpoints fail with errors that name the tensor or field and what was expected."""

import json
import shutil

import numpy as np
import pytest

from andesvl_jax.convert.hf_config import ConfigError
from andesvl_jax.convert.loader import load_checkpoint
from andesvl_jax.convert.safetensors_io import CheckpointError, SafetensorsReader, write_safetensors

SRC = "andesvl_aimv2_tiny"


@pytest.fixture
def ckpt(fixtures_dir, tmp_path):
    """A writable copy of the AIMv2 fixture: (directory, tensors dict, config dict)."""
    src = fixtures_dir / SRC
    reader = SafetensorsReader(src)
    tensors = {k: np.array(reader.read(k)) for k in reader.keys()}
    config = json.loads((src / "config.json").read_text())
    return tmp_path, tensors, config


def write(directory, tensors, config):
    for f in directory.glob("*.safetensors"):
        f.unlink()
    write_safetensors(directory / "model.safetensors", tensors)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_missing_tensor(ckpt):
    d, tensors, config = ckpt
    del tensors["language_model.model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensors.*layers\.1\.mlp\.up_proj\.weight"):
        load_checkpoint(write(d, tensors, config))


def test_extra_tensor(ckpt):
    d, tensors, config = ckpt
    tensors["vision_encoder.trunk.blocks.2.norm_1.weight"] = np.ones(64, np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected tensors.*blocks\.2\.norm_1"):
        load_checkpoint(write(d, tensors, config))


def test_misshaped_tensor(ckpt):
    d, tensors, config = ckpt
    tensors["mlp.2.weight"] = np.zeros((64, 128), np.float32)
    with pytest.raises(CheckpointError, match=r"mlp\.2\.weight \(64, 128\).*expects \(256, 64\)"):
        load_checkpoint(write(d, tensors, config))


def test_config_that_does_not_match_the_weights(ckpt):
    d, tensors, config = ckpt
    config["text_config"]["num_hidden_layers"] = 3
    with pytest.raises(CheckpointError, match=r"missing tensors.*layers\.2\."):
        load_checkpoint(write(d, tensors, config))
    config["text_config"]["num_hidden_layers"] = 2
    config["text_config"]["intermediate_size"] = 96
    with pytest.raises(CheckpointError, match=r"gate_proj\.weight.*expects"):
        load_checkpoint(write(d, tensors, config))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("model_type", "llava", r"unknown model_type 'llava'"),
        ("text_config.attention_bias", True, r"'attention_bias' must be false"),
        ("text_config.rope_scaling", {"type": "yarn"}, r"'rope_scaling' is not supported"),
        ("vision_config.hidden_stride", 3, r"'hidden_stride' must be 2"),
        ("text_config.hidden_size", None, r"hidden_size"),
    ],
)
def test_unsupported_config(ckpt, field, value, match):
    d, tensors, config = ckpt
    node = config
    *parents, leaf = field.split(".")
    for p in parents:
        node = node[p]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        load_checkpoint(write(d, tensors, config))


def test_truncated_file(ckpt):
    d, tensors, config = ckpt
    write(d, tensors, config)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: not a readable .*tensor \S+ ends at byte"
    ):
        load_checkpoint(d)


def test_no_weights_and_no_pickles(fixtures_dir, tmp_path):
    shutil.copy(fixtures_dir / SRC / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle data is never loaded")
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors files"):
        load_checkpoint(tmp_path)
