"""The safetensors glue: interop with the reference readers/writers (torch included), slices,
sharded indexes, and errors that name the file and the tensor."""

import json

import ml_dtypes
import numpy as np
import pytest

from andesvl_jax.convert.safetensors_io import CheckpointError, SafetensorsReader, write_safetensors


def test_bf16_interop_with_torch_both_ways(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    x = (np.arange(24, dtype=np.float32) / 7 - 1).astype(ml_dtypes.bfloat16).reshape(4, 6)
    write_safetensors(tmp_path / "ours.safetensors", {"w": x})
    theirs = load_file(tmp_path / "ours.safetensors")["w"]
    assert theirs.dtype == torch.bfloat16
    assert theirs.view(torch.int16).numpy().tobytes() == x.tobytes()

    t = torch.randn(5, 3).to(torch.bfloat16)
    other = tmp_path / "torch"
    other.mkdir()
    save_file({"t": t, "f": torch.arange(4, dtype=torch.float16)}, other / "model.safetensors")
    r = SafetensorsReader(other)
    assert r.read("t").dtype == ml_dtypes.bfloat16
    assert r.read("t").tobytes() == t.view(torch.int16).numpy().tobytes()
    assert r.read("t", (slice(1, 3), slice(2, 3))).tobytes() == (
        t[1:3, 2:3].contiguous().view(torch.int16).numpy().tobytes()
    )
    np.testing.assert_array_equal(r.read("f"), np.arange(4, dtype=np.float16))
    assert SafetensorsReader(tmp_path).metadata == {"format": "pt"}  # what transformers expects


def test_strided_arrays_are_written_as_their_values(tmp_path):
    """safetensors' save_file writes a strided array's raw buffer; ours copies it first."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_safetensors(tmp_path / "m.safetensors", {"t": x.T, "s": x[:, ::2]})
    r = SafetensorsReader(tmp_path)
    np.testing.assert_array_equal(r.read("t"), x.T)
    np.testing.assert_array_equal(r.read("s"), x[:, ::2])


def test_slices_scalars_and_empty_tensors(tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    tensors = {"x": x, "scalar": np.float32(2.5), "empty": np.zeros((0, 4), np.int32)}
    write_safetensors(tmp_path / "m.safetensors", tensors)
    r = SafetensorsReader(tmp_path)
    assert r.keys() == ["empty", "scalar", "x"] and r.shape("x") == (3, 4, 5)
    np.testing.assert_array_equal(r.read("x", (slice(1, 3), slice(None, 2))), x[1:3, :2])
    np.testing.assert_array_equal(r.read("x", ()), x)
    assert r.read("scalar").shape == () and float(r.read("scalar")) == 2.5
    assert r.read("empty", (slice(0, 0), slice(1, 3))).shape == (0, 2)
    with pytest.raises(CheckpointError, match=r"tensor 'y' not found"):
        r.read("y")


def _two_shards(tmp_path, weight_map=None):
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "b.safetensors", {"v": np.zeros(3, np.float32)})
    index = {"weight_map": weight_map or {"w": "a.safetensors", "v": "b.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tmp_path


def test_sharded_index_reads_every_file(tmp_path):
    r = SafetensorsReader(_two_shards(tmp_path))
    assert r.keys() == ["v", "w"] and r.read("v").shape == (3,)


@pytest.mark.parametrize(
    "weight_map,match",
    [
        ({"w": "b.safetensors", "v": "a.safetensors"}, r"lists tensor w in b\.safetensors, but a"),
        ({"w": "a.safetensors", "v": "b.safetensors", "u": "a.safetensors"}, r"u in a.*none of"),
        ({"w": "a.safetensors", "v": "c.safetensors"}, r"lists c\.safetensors, which does not"),
    ],
)
def test_index_that_disagrees_with_the_files(tmp_path, weight_map, match):
    with pytest.raises(CheckpointError, match=match):
        SafetensorsReader(_two_shards(tmp_path, weight_map))


def test_bad_index_and_duplicate_tensors(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"index\.json: not a safetensors index"):
        SafetensorsReader(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "b.safetensors", {"w": np.ones(2, np.float32)})
    with pytest.raises(
        CheckpointError, match=r"b\.safetensors: tensor w is also in a\.safetensors"
    ):
        SafetensorsReader(tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 20])  # no header length, a cut header, a cut header JSON
def test_cut_headers_name_the_file(tmp_path, keep):
    write_safetensors(tmp_path / "m.safetensors", {"w": np.ones(64, np.float32)})
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match=r"m\.safetensors: not a readable safetensors file"):
        SafetensorsReader(tmp_path)


def test_unwritable_dtype_names_the_tensor(tmp_path):
    tensors = {"ok": np.ones(2, np.float32), "bad": np.ones(2, np.complex128)}
    with pytest.raises(CheckpointError, match=r"cannot write tensor\(s\) bad \(complex128\)"):
        write_safetensors(tmp_path / "m.safetensors", tensors)


def test_float8_reads_or_names_the_tensor(tmp_path):
    """safetensors 0.8's numpy reader cannot return float8; the error must say which tensor."""
    x = np.linspace(-2, 2, 8).astype(ml_dtypes.float8_e4m3fn)
    write_safetensors(tmp_path / "m.safetensors", {"f8": x})
    r = SafetensorsReader(tmp_path)
    try:
        got = r.read("f8")
    except CheckpointError as e:
        assert "m.safetensors: cannot read tensor f8 (dtype F8_E4M3" in str(e)
    else:
        assert got.dtype == x.dtype and got.tobytes() == x.tobytes()
