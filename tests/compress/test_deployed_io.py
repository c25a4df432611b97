"""Deployed checkpoints in safetensors: round trip (either in-memory layout, per-layer tensors in the
file), and bad files — missing, mis-shaped or mis-typed scales, unexpected tensors, not a deployed
file, truncated — are errors naming the tensor."""

import json

import numpy as np
import pytest
from compress_testing import greedy, tiny_model, token_batch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from andesvl_jax.compress.calibrate import calibrate_activations
from andesvl_jax.compress.deploy import deploy, deployed_metas
from andesvl_jax.compress.deployed_io import load_deployed, save_deployed
from andesvl_jax.compress.qlinear import quantize_model
from andesvl_jax.convert.safetensors_io import CheckpointError

PROMPT = np.array([4, 8, 15, 16, 23, 42], np.int32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A mixed-precision deployed model (W8 attention, W4/W2 MLPs, A16) and its file."""
    model = quantize_model(tiny_model(scan=False), "mixed")
    calibrate_activations(model, lambda m: m(token_batch(1)))
    deployed = deploy(model)
    path = tmp_path_factory.mktemp("deployed") / "model.safetensors"
    save_deployed(deployed, path)
    return deployed, path


def test_round_trip_is_exact(saved):
    deployed, path = saved
    loaded = load_deployed(path)
    assert deployed_metas(loaded) == deployed_metas(deployed)
    want = greedy(deployed, PROMPT, 4)
    got = greedy(loaded, PROMPT, 4)
    assert want[0] == got[0]
    np.testing.assert_array_equal(want[1], got[1])


def test_file_layout_is_per_layer_with_metadata(saved):
    _, path = saved
    with safe_open(path, "np") as f:
        meta = f.metadata()
        keys = set(f.keys())
        assert f.get_tensor("llm.layers.1.mlp.up.plane0").dtype == np.uint32
        assert f.get_tensor("llm.layers.1.mlp.up.scales").dtype == np.float16
        assert f.get_tensor("llm.layers.0.attn.q.act_scale").shape == ()
    assert meta["format"] == "andesvl-deployed" and meta["version"] == "1"
    linears = json.loads(meta["linears"])
    assert (
        linears["llm/layers/1/mlp/up"]["bits"] == 2 and linears["llm/layers/0/mlp/up"]["bits"] == 4
    )
    assert linears["llm/layers/0/attn/q"]["group"] is None  # per channel, packed in groups of 64
    assert linears["llm/layers/0/attn/q"]["pack_group"] == 64
    assert "llm.layers.0.attn.q.kernel" not in keys and "llm.embed.embedding" in keys
    assert json.loads(meta["config"])["text"]["num_layers"] == 2


def test_stacked_deployment_saves_the_same_file(tmp_path):
    model = quantize_model(tiny_model(scan=True), "w4a8_g32")
    calibrate_activations(model, lambda m: m(token_batch(1)))
    stacked, separate = deploy(model), deploy(model, separate_layers=True)
    save_deployed(stacked, tmp_path / "a.safetensors")
    save_deployed(separate, tmp_path / "b.safetensors")
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not load_deployed(tmp_path / "a.safetensors").cfg.scan_layers


def rewrite(path, tmp_path, edit):
    tensors = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    edit(tensors, meta)
    out = tmp_path / "bad.safetensors"
    save_file(tensors, out, metadata=meta)
    return out


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t, m: t.pop("llm.layers.0.mlp.down.scales"),
            r"tensor llm\.layers\.0\.mlp\.down\.scales is missing \(expected float16 \(4, 64\)\)",
        ),
        (
            lambda t, m: t.update(
                {"llm.layers.1.attn.k.scales": t["llm.layers.1.attn.k.scales"][:, :16]}
            ),
            r"tensor llm\.layers\.1\.attn\.k\.scales has shape \(1, 16\), expected \(1, 32\)",
        ),
        (
            lambda t, m: t.update(
                {"llm.layers.0.attn.o.scales": t["llm.layers.0.attn.o.scales"].astype(np.float32)}
            ),
            r"tensor llm\.layers\.0\.attn\.o\.scales has dtype float32, expected float16",
        ),
        (
            lambda t, m: t.pop("llm.layers.0.attn.v.act_scale"),
            r"tensor llm\.layers\.0\.attn\.v\.act_scale is missing",
        ),
        (
            lambda t, m: t.update({"llm.layers.0.attn.q.lora_a": np.zeros(3, np.float32)}),
            r"unexpected tensors \['llm\.layers\.0\.attn\.q\.lora_a'\]",
        ),
        (
            lambda t, m: m.update({"format": "pt"}),
            r"not a deployed AndesVL checkpoint \(metadata format='pt'",
        ),
        (lambda t, m: m.update({"config": "{"}), "unreadable config/linears metadata"),
    ],
    ids=[
        "missing-scales",
        "misshaped-scales",
        "scales-dtype",
        "missing-act-scale",
        "extra",
        "format",
        "config",
    ],
)
def test_bad_files_name_the_tensor(saved, tmp_path, edit, message):
    _, path = saved
    with pytest.raises(CheckpointError, match=message):
        load_deployed(rewrite(path, tmp_path, edit))


def test_truncated_or_missing_file(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_deployed(cut)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_deployed(tmp_path / "nope.safetensors")


def test_saving_a_model_that_is_not_deployed(tmp_path):
    with pytest.raises(ValueError, match="not a deployed model"):
        save_deployed(tiny_model(), tmp_path / "x.safetensors")
