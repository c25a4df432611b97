"""Export back to the official layout (bit-identical) and sharded loading straight into shardings."""

import json
import math
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.convert.hf_config import read_config
from andesvl_jax.convert.loader import export_official, load_checkpoint
from andesvl_jax.convert.safetensors_io import SafetensorsReader, write_safetensors
from andesvl_jax.sharding import make_mesh, state_shardings

FLAVOURS = ["andesvl_aimv2_tiny", "andesvl_siglip2_tiny"]


def _flat(state) -> list[tuple[str, object]]:
    """(dotted path, leaf) of every leaf of an nnx.State, Variables kept whole."""
    leaves = jax.tree_util.tree_leaves_with_path(
        state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves]


def _leaves(model) -> dict[str, np.ndarray]:
    """Every parameter of a model as a host array, by path."""
    return {path: np.asarray(var.get_value()) for path, var in _flat(nnx.state(model))}


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
    """Every tensor (bf16 and the other dtypes), written by us and read by the `safetensors`
    package and the other way round: same names, dtype, shape and bytes."""
    import ml_dtypes
    from safetensors.numpy import load_file, save_file

    tensors = {
        "w": (np.arange(12, dtype=np.float32) / 7).astype(ml_dtypes.bfloat16).reshape(3, 4),
        "b": (np.arange(3) / 3 - 0.5).astype(np.float16),
        "f": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
        "i": np.arange(-3, 3, dtype=np.int64),
        "mask": np.array([True, False, True]),
    }
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir(), theirs.mkdir()
    write_safetensors(ours / "model.safetensors", tensors)
    save_file(tensors, str(theirs / "model.safetensors"))
    reads = {
        "ours by safetensors": load_file(ours / "model.safetensors"),
        "theirs by us": {k: np.asarray(SafetensorsReader(theirs).read(k)) for k in tensors},
        "ours by us": {k: np.asarray(SafetensorsReader(ours).read(k)) for k in tensors},
    }
    for how, got in reads.items():
        assert sorted(got) == sorted(tensors), how
        for k, x in tensors.items():
            assert got[k].dtype == x.dtype and got[k].shape == x.shape, (how, k, got[k].dtype)
            assert got[k].tobytes() == x.tobytes(), (how, k)


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
    leaves_a, leaves_b = _leaves(a), _leaves(b)
    assert leaves_a.keys() == leaves_b.keys()
    for path, x in leaves_a.items():
        y = leaves_b[path]
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), path


def test_loads_straight_into_shardings(fixtures_dir, monkeypatch):
    assert jax.device_count() == 8
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    src = fixtures_dir / "andesvl_aimv2_tiny"
    plain, _ = load_checkpoint(src)
    reads, read = [], SafetensorsReader.read

    def recording(self, key, index=None):
        out = read(self, key, index)
        reads.append((key, out.size, math.prod(self.shape(key))))
        return out

    monkeypatch.setattr(SafetensorsReader, "read", recording)
    sharded, _ = load_checkpoint(src, mesh=mesh)
    # A transposed kernel's shard (fsdp x tensor = 1/4) reads only its quarter of their tensor.
    q = [(n, full) for k, n, full in reads if k.endswith("layers.0.self_attn.q_proj.weight")]
    assert len(q) == 8 and all(n == full // 4 for n, full in q), q
    q = sharded.llm.layers.attn.q.kernel.get_value()  # [layers, embed, heads]: (None, fsdp, tensor)
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert q.addressable_shards[0].data.shape == (2, 32, 32)
    emb = sharded.llm.embed.embedding.get_value()  # [vocab, embed]: (tensor, fsdp)
    assert emb.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    # every parameter: the sharding the rules give its logical axes, and the same values
    want = state_shardings(nnx.state(plain), mesh)
    placed = nnx.state(sharded)
    for (path, var), (_, sh) in zip(_flat(placed), _flat(want), strict=True):
        assert var.get_value().sharding.is_equivalent_to(sh, var.get_value().ndim), path
    plain_leaves = _leaves(plain)
    for path, x in _leaves(sharded).items():
        np.testing.assert_array_equal(x, plain_leaves[path], err_msg=path)
    assert len(plain_leaves) == len(_flat(placed))
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
