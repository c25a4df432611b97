"""Hostile checkpoints: safetensors files, sharded indexes and config.json (convert/).

A case passes if the reader accepts it or raises CheckpointError/ConfigError naming the file;
never a bare library error, a hang or an attempt to read a 2^60-byte header.
"""

from __future__ import annotations

import json
import math
import shutil
import struct

import numpy as np
import pytest
from fuzzlib import examples, mutated, run_case
from hypothesis import given
from hypothesis import strategies as st

from andesvl_jax.convert.hf_config import read_config
from andesvl_jax.convert.loader import load_checkpoint
from andesvl_jax.convert.safetensors_io import (
    INDEX_NAME,
    CheckpointError,
    SafetensorsReader,
    write_safetensors,
)

TENSORS = {
    "a": np.arange(12, dtype=np.float32).reshape(3, 4),
    "b": np.ones((2, 2), dtype=np.int64),
    "c": np.zeros((5,), dtype=np.float16),
}


def _valid_file(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("seed")
    write_safetensors(d / "m.safetensors", TENSORS, {"format": "pt"})
    return (d / "m.safetensors").read_bytes()


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory) -> bytes:
    return _valid_file(tmp_path_factory)


def _read_all(directory) -> dict:
    reader = SafetensorsReader(directory)
    return {k: reader.read(k) for k in reader.keys()}


def _fresh(tmp_path):
    d = tmp_path / "ckpt"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    return d


@given(data=st.data())
@examples(200)
def test_mutated_safetensors_bytes(tmp_path, seed_file, data):
    d = _fresh(tmp_path)
    (d / "m.safetensors").write_bytes(data.draw(mutated(seed_file)))
    run_case("safetensors", lambda: _read_all(d), where="m.safetensors")


DTYPES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "F8_E4M3", "C64", "X9", "", "f32"]
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1, "F64": 8, "F8_E4M3": 1}
NAMES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\x00b", "../etc", "__metadata__", "é" * 40, ""]),
)


@st.composite
def headers(draw):
    """(header dict or raw JSON text, data length): dtypes, shapes and offsets that may be wrong."""
    header, cursor = {}, 0
    for _ in range(draw(st.integers(0, 4))):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(
            st.lists(
                st.one_of(st.integers(0, 6), st.sampled_from([-1, 2**31, 2**62, 2**64])),
                max_size=3,
            )
        )
        nbytes = math.prod(max(s, 0) for s in shape) * SIZES.get(dtype, 4)
        start = draw(st.one_of(st.just(cursor), st.integers(-4, cursor + 64)))
        end = draw(st.one_of(st.just(start + nbytes), st.integers(-4, 2**40), st.just(2**64 + 1)))
        cursor = max(cursor, end) if 0 <= end < 2**20 else cursor
        entry = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
        if draw(st.booleans()) and draw(st.booleans()):
            entry = draw(st.sampled_from([{"dtype": dtype}, [], "x", {"shape": "3"}]))
        header[draw(NAMES)] = entry
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.sampled_from([{"format": "pt"}, {"format": 3}, [], "x", {"k": {"nested": 1}}])
        )
    return header, draw(st.integers(0, 256))


@given(spec=headers(), claimed=st.sampled_from([None, 0, 7, 2**20, 2**31, 2**60, 2**64 - 1]))
@examples(150)
def test_hostile_safetensors_headers(tmp_path, spec, claimed):
    header, data_len = spec
    d = _fresh(tmp_path)
    text = json.dumps(header).encode()
    n = len(text) if claimed is None else claimed
    (d / "m.safetensors").write_bytes(struct.pack("<Q", n) + text + bytes(data_len))
    run_case("safetensors", lambda: _read_all(d), where="m.safetensors")


def test_header_claiming_2_to_60_bytes_is_refused_without_reading(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}")
    err = run_case("safetensors", lambda: SafetensorsReader(tmp_path), where="m.safetensors")
    assert isinstance(err, CheckpointError) and "header claims 1152921504606846976 bytes" in str(
        err
    )


@st.composite
def weight_maps(draw):
    files = st.one_of(
        st.sampled_from(
            [
                "m.safetensors",
                "../m.safetensors",
                "/etc/passwd",
                "sub/m.safetensors",
                ".",
                "..",
                "",
                "gone.safetensors",
                "m\x00.safetensors",
            ]
        ),
        st.integers(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
    wm = draw(st.dictionaries(st.sampled_from(["a", "b", "c", "zz"]), files, max_size=4))
    return draw(st.sampled_from([{"weight_map": wm}, {"weight_map": []}, {"x": 1}, [], wm]))


@given(index=weight_maps(), raw=st.one_of(st.none(), st.binary(max_size=40)))
@examples(100)
def test_hostile_index(tmp_path, seed_file, index, raw):
    d = _fresh(tmp_path)
    (d / "m.safetensors").write_bytes(seed_file)
    (d / INDEX_NAME).write_bytes(raw if raw is not None else json.dumps(index).encode())
    run_case("safetensors_index", lambda: _read_all(d), where=str(d))


def test_index_cannot_point_outside_the_directory(tmp_path, seed_file):
    (tmp_path / "outside.safetensors").write_bytes(seed_file)
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / INDEX_NAME).write_text(json.dumps({"weight_map": {"a": "../outside.safetensors"}}))
    err = run_case("safetensors_index", lambda: SafetensorsReader(d), where=INDEX_NAME)
    assert "not a plain file name" in str(err)


HOSTILE_VALUES = [
    None,
    "abc",
    -1,
    0,
    1e308,
    float("nan"),
    float("inf"),
    [],
    {},
    2**70,
    True,
    [[[1]]],
    "\ud800",
    3.5,
]


def _paths(d, prefix=()):
    for k, v in d.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


@pytest.fixture(scope="module")
def fixture_config(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / "andesvl_aimv2_tiny" / "config.json").read_text())


@given(data=st.data())
@examples(150)
def test_hostile_config_json(tmp_path, fixture_config, data):
    d = _fresh(tmp_path)
    cfg = json.loads(json.dumps(fixture_config))
    paths = sorted(_paths(cfg))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = cfg
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if data.draw(st.booleans()) and data.draw(st.booleans()):
            node.pop(path[-1], None)
        else:
            node[path[-1]] = data.draw(st.sampled_from(HOSTILE_VALUES))
    text = json.dumps(cfg).encode()
    if data.draw(st.integers(0, 4)) == 0:
        text = data.draw(mutated(text))
    (d / "config.json").write_bytes(text)
    run_case("config_json", lambda: read_config(d), where="config.json")


def test_non_finite_weights_are_refused_by_name(tmp_path, fixtures_dir):
    src = fixtures_dir / "andesvl_aimv2_tiny"
    reader = SafetensorsReader(src)
    tensors = {k: np.array(reader.read(k)) for k in reader.keys()}
    key = "language_model.model.layers.0.mlp.up_proj.weight"
    tensors[key][3, 5] = np.nan
    tensors[key][0, 0] = np.inf
    write_safetensors(tmp_path / "model.safetensors", tensors)
    shutil.copy(src / "config.json", tmp_path / "config.json")
    err = run_case("safetensors", lambda: load_checkpoint(tmp_path), where=key)
    assert isinstance(err, CheckpointError) and "2 NaN/Inf value(s)" in str(err)


@given(data=st.data())
@examples(40)
def test_hostile_workdir_run_config(tmp_path, data):
    from andesvl_jax.convert.workdir import load_run_config

    seed = json.dumps({"model": {"size": "tiny"}, "data": {"tokenizer": None}}).encode()
    blob = data.draw(st.one_of(mutated(seed), st.sampled_from([b"[1]", b"\xff", b"[" * 10**5])))
    (tmp_path / "config.json").write_bytes(blob)
    run_case("workdir_config", lambda: load_run_config(tmp_path), where="config.json")


@pytest.fixture(scope="module")
def fixture_tensors(fixtures_dir) -> dict:
    reader = SafetensorsReader(fixtures_dir / "andesvl_aimv2_tiny")
    return {k: np.array(reader.read(k)) for k in reader.keys()}


def _retyped(arr: np.ndarray, how: str) -> np.ndarray | None:
    import ml_dtypes

    return {
        "bf16_nan": lambda: np.where(arr == arr.flat[0], np.nan, arr).astype(ml_dtypes.bfloat16),
        "f16": lambda: arr.astype(np.float16),
        "f64": lambda: arr.astype(np.float64),
        "i32": lambda: arr.astype(np.int32),
        "bool": lambda: arr > 0,
        "transpose": lambda: arr.T.copy(),
        "flat": lambda: arr.reshape(-1),
        "extra_dim": lambda: arr[None],
        "grow": lambda: np.concatenate([arr, arr[:1]]),
        "scalar": lambda: np.float32(1.0),
        "delete": lambda: None,
    }[how]()


@given(data=st.data())
@examples(40)
def test_hostile_weights_through_the_loader(tmp_path, fixtures_dir, fixture_tensors, data):
    """Wrong dtypes, shapes, NaN bf16, missing and renamed tensors in a real checkpoint."""
    d = _fresh(tmp_path)
    tensors = dict(fixture_tensors)
    key = data.draw(st.sampled_from(sorted(tensors)))
    how = data.draw(st.sampled_from(sorted(["bf16_nan", "f16", "f64", "i32", "bool", "transpose",
                                             "flat", "extra_dim", "grow", "scalar", "delete"])))  # fmt: skip
    new = _retyped(tensors.pop(key), how)
    if new is not None:
        tensors[data.draw(st.sampled_from([key, key + ".x", "é\u2028"]))] = new
    write_safetensors(d / "model.safetensors", tensors)
    shutil.copy(fixtures_dir / "andesvl_aimv2_tiny" / "config.json", d / "config.json")
    run_case("safetensors_load", lambda: load_checkpoint(d), where=str(d))


def _sparse(path, size: int, head: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)  # a hole: no disk used, nothing to read


@pytest.mark.parametrize(
    "name,size,call,match",
    [
        ("m.safetensors", 100 * 2**20 + 9, "reader", "header claims"),
        (INDEX_NAME, 100 * 2**20 + 1, "reader", "not a safetensors index"),
        ("config.json", 64 * 2**20 + 1, "config", "a config is at most"),
        ("tokenizer.json", 256 * 2**20 + 1, "tokenizer", "a tokenizer.json is at most"),
    ],
)
def test_huge_files_are_refused_before_reading(tmp_path, name, size, call, match):
    """100 MB+ JSON headers / index / config / tokenizer files: refused from their size."""
    from andesvl_jax.data.tokenizer import TextTokenizer

    head = struct.pack("<Q", size - 8) + b"{" if name.endswith(".safetensors") else b"{"
    _sparse(tmp_path / name, size, head)
    fn = {
        "reader": lambda: SafetensorsReader(tmp_path),
        "config": lambda: read_config(tmp_path),
        "tokenizer": lambda: TextTokenizer.from_file(tmp_path / name),
    }[call]
    err = run_case("huge_files", fn, where=name)
    assert match in str(err), err
