"""Hostile deployed (quantized, packed) checkpoints: `compress.load_deployed` (docs/formats.md §5).

A case passes if the file loads or `CheckpointError` names it; never a bare safetensors/JSON/jax
error or a hang. Seeds: a real deployed tiny model (W8 attention, W4/W2 MLPs, A16).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx
from fuzzlib import examples, mutated, run_case
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from andesvl_jax.compress import calibrate_activations, deploy, load_deployed, quantize_model
from andesvl_jax.compress.deployed_io import save_deployed
from andesvl_jax.config import get_preset
from andesvl_jax.convert.safetensors_io import CheckpointError
from andesvl_jax.models.andesvl import AndesVL


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """(file bytes, tensors, metadata) of a deployed tiny model."""
    model = AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0))
    model = quantize_model(model, "mixed")
    calibrate_activations(model, lambda m: m(np.arange(16, dtype=np.int32)[None] % 500))
    path = tmp_path_factory.mktemp("deployed") / "model.safetensors"
    save_deployed(deploy(model), path)
    with safe_open(path, framework="np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    return path.read_bytes(), tensors, metadata


def _load(path):
    return lambda: load_deployed(path)


@given(data=st.data())
@examples(15)
def test_mutated_deployed_files(seed, tmp_path_factory, data):
    raw, _, _ = seed
    path = tmp_path_factory.mktemp("case") / "model.safetensors"
    path.write_bytes(data.draw(mutated(raw)))
    run_case("deployed", _load(path), where=str(path))


@given(data=st.data())
@examples(30)
def test_edited_tensors_and_metadata(seed, tmp_path_factory, data):
    """Structured edits a byte flip rarely reaches: a tensor dropped, reshaped, retyped or filled
    with NaN/Inf; the config or linears metadata replaced by other JSON."""
    _, tensors, metadata = seed
    tensors, metadata = dict(tensors), dict(metadata)
    key = data.draw(st.sampled_from(sorted(tensors)))
    edit = data.draw(st.sampled_from(["drop", "reshape", "retype", "nan", "inf", "meta", "extra"]))
    value = tensors[key]
    if edit == "drop":
        del tensors[key]
    elif edit == "reshape":
        tensors[key] = value.reshape(-1)[: max(value.size - 1, 1)].copy()
    elif edit == "retype":
        tensors[key] = value.astype(data.draw(st.sampled_from([np.float64, np.int8, np.uint16])))
    elif edit in ("nan", "inf") and value.dtype.kind == "f":
        bad = value.copy()
        bad.reshape(-1)[data.draw(st.integers(0, value.size - 1))] = (
            np.nan if edit == "nan" else np.inf
        )
        tensors[key] = bad
    elif edit == "meta":
        field = data.draw(st.sampled_from(["config", "linears", "format", "version"]))
        junk = data.draw(
            st.one_of(
                st.just("{}"),
                st.just("[]"),
                st.just("not json"),
                st.just(json.dumps({"text": {"hidden_size": 0}})),
                st.just(json.dumps({"x": {"bits": 5}})),
                st.text(max_size=20),
            )
        )
        metadata[field] = junk
    elif edit == "extra":
        tensors["llm.unexpected"] = np.zeros(3, np.float32)
    path = tmp_path_factory.mktemp("case") / "model.safetensors"
    save_file(tensors, str(path), metadata)
    result = run_case("deployed", _load(path), where=str(path))
    if edit in ("nan", "inf") and value.dtype.kind == "f":
        assert not isinstance(result, nnx.Module), f"{edit} in {key} was accepted"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_step_size_is_refused_by_name(seed, tmp_path, bad):
    _, tensors, metadata = seed
    key = next(k for k in sorted(tensors) if k.endswith("w_scale") or "scale" in k)
    tensors = dict(tensors)
    tensors[key] = tensors[key].copy()
    tensors[key].reshape(-1)[0] = bad
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata)
    with pytest.raises(CheckpointError, match=rf"{path}: tensor {key} has 1 NaN/Inf value"):
        load_deployed(path)
