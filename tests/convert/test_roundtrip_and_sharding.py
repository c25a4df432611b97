"""Export back to the official layout (bit-identical) and sharded loading straight into shardings."""

import json
import shutil

import jax
import numpy as np
import pytest

from andesvl_jax.convert.hf_config import read_config
from andesvl_jax.convert.loader import export_official, load_checkpoint
from andesvl_jax.convert.safetensors_io import SafetensorsReader, write_safetensors
from andesvl_jax.sharding import make_mesh

FLAVOURS = ["andesvl_aimv2_tiny", "andesvl_siglip2_tiny"]


@pytest.mark.parametrize("name", FLAVOURS)
@pytest.mark.parametrize("scan", [True, False])
def test_export_round_trip_is_bit_identical(fixtures_dir, tmp_path, name, scan):
    src = fixtures_dir / name
    model, _ = load_checkpoint(src, overrides={"scan_layers": scan})
    export_official(model, tmp_path)
    theirs, ours = SafetensorsReader(src), SafetensorsReader(tmp_path)
    assert ours.keys() == theirs.keys()
    for key in theirs.keys():
        a, b = np.asarray(theirs.read(key)), np.asarray(ours.read(key))
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), key
    assert read_config(tmp_path)[1] == read_config(src)[1]


def test_bf16_tensors_read_and_write(tmp_path):
    import ml_dtypes

    x = (np.arange(12, dtype=np.float32) / 7).astype(ml_dtypes.bfloat16).reshape(3, 4)
    write_safetensors(tmp_path / "t.safetensors", {"w": x, "b": np.ones(3, np.float16)})
    r = SafetensorsReader(tmp_path)
    assert r.read("w").dtype == ml_dtypes.bfloat16 and r.read("w").tobytes() == x.tobytes()
    # Interoperable with the reference implementation.
    from safetensors.numpy import load_file

    assert np.array_equal(load_file(tmp_path / "t.safetensors")["b"], np.ones(3, np.float16))


def test_sharded_index_checkpoint(fixtures_dir, tmp_path):
    """A checkpoint split over several files with model.safetensors.index.json loads the same."""
    src = fixtures_dir / "andesvl_aimv2_tiny"
    reader = SafetensorsReader(src)
    keys = reader.keys()
    halves = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    for fname, part in halves.items():
        write_safetensors(tmp_path / fname, {k: np.asarray(reader.read(k)) for k in part})
    weight_map = {k: f for f, part in halves.items() for k in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    shutil.copy(src / "config.json", tmp_path / "config.json")
    a, _ = load_checkpoint(src)
    b, _ = load_checkpoint(tmp_path)
    np.testing.assert_array_equal(
        a.llm.embed.embedding.get_value(), b.llm.embed.embedding.get_value()
    )


def test_loads_straight_into_shardings(fixtures_dir):
    assert jax.device_count() == 8
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    src = fixtures_dir / "andesvl_aimv2_tiny"
    sharded, _ = load_checkpoint(src, mesh=mesh)
    plain, _ = load_checkpoint(src)
    q = sharded.llm.layers.attn.q.kernel.get_value()  # [layers, embed, heads]: (None, fsdp, tensor)
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert q.addressable_shards[0].data.shape == (2, 32, 32)
    emb = sharded.llm.embed.embedding.get_value()  # [vocab, embed]: (tensor, fsdp)
    assert emb.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    np.testing.assert_array_equal(
        np.asarray(q), np.asarray(plain.llm.layers.attn.q.kernel.get_value())
    )
    inputs = np.load(src / "inputs.npz")
    from andesvl_jax.data.patches import pack_images

    packed = pack_images([[inputs["pixel_values_0"], inputs["pixel_values_1"]]], 14)
    with jax.default_matmul_precision("highest"):
        a = sharded(inputs["input_ids"], packed, image_flags=inputs["image_flags"])[0]
        b = plain(inputs["input_ids"], packed, image_flags=inputs["image_flags"])[0]
    np.testing.assert_allclose(
        a, b, atol=1e-4 * max(1.0, float(np.abs(b).max()))
    )  # reduction order differs


def test_mesh_errors_are_clear():
    with pytest.raises(ValueError, match="needs 16 devices"):
        make_mesh({"data": 4, "fsdp": 4})
    with pytest.raises(ValueError, match="unknown mesh axes"):
        make_mesh({"pipeline": 2})
    assert make_mesh({"data": -1, "tensor": 2}).shape == {"data": 4, "fsdp": 1, "tensor": 2}
