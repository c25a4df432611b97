"""`andesvl-jax quantize` end to end on tiny runs: a float run quantized by RTN / GPTQ, a qat run
deployed; the outputs open with `load_model` like any checkpoint, decode in the Engine, and the
deployed model computes what the QAT run's fake-quantized model computes."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors import safe_open

from andesvl_jax.compress.bpw import deployed_bits
from andesvl_jax.compress.deploy import DeployedLinear
from andesvl_jax.compress.qlinear import QuantLinear, quant_sites
from andesvl_jax.infer.engine import Engine
from andesvl_jax.infer.load import DEPLOYED_FILE, load_model
from andesvl_jax.jobs.demo import held_out
from andesvl_jax.jobs.quantize import quantize
from andesvl_jax.train.loop import train


@pytest.fixture(scope="module")
def float_run(tmp_path_factory, make_config):
    workdir = tmp_path_factory.mktemp("sft")
    # prompts of the held-out questions reach ~150 tokens (eval-quant scores them in the run's shapes)
    train(make_config(steps=2, **{"data.max_tokens": 256}), workdir)
    return workdir


def _logits(model, ids):
    return np.asarray(model(jnp.asarray(ids))[0])


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_ptq_of_a_run_is_a_deployed_checkpoint_the_engine_decodes(
    float_run, tmp_path, method, make_config
):
    out = tmp_path / method
    report = quantize(float_run, "w4a8_g32", method, out, calib_batches=1)
    assert report["method"] == method and (out / DEPLOYED_FILE).is_file()
    assert report["bits"] == deployed_bits(out / DEPLOYED_FILE)
    model, tokenizer = load_model(out)
    assert any(isinstance(m, DeployedLinear) for _, m in nnx.iter_modules(model))
    d = report["data"]
    engine = Engine(
        model, tokenizer, image_max_size=d["image_max_size"], max_prompt_tokens=d["max_tokens"],
        max_patches=d["max_patches"], batch_size=2,
    )  # fmt: skip
    done = engine.generate(held_out(make_config().data, 2), max_new_tokens=3)
    assert len(done) == 2 and all(len(c.token_ids) >= 1 for c in done)
    with pytest.raises(FileExistsError, match="--overwrite"):
        quantize(float_run, "w4a8_g32", method, out)


def test_a_qat_run_opens_quantized_and_deploys_to_the_same_numbers(tmp_path, make_config):
    run = tmp_path / "qat"
    train(make_config(stage="qat", steps=2, **{"quant.rules": "w4a8_g32"}), run)
    qat, _ = load_model(run)  # the run's structure: QuantLinears with the trained steps
    sites = quant_sites(qat)
    assert sites and all(isinstance(s.module, QuantLinear) and s.module.exact for s in sites)
    out = tmp_path / "deployed"
    report = quantize(run, "w4a8_g32", "qat", out)
    assert report["source"] == str(run) and not (out / "qat").exists()  # deployed, not retrained
    deployed, _ = load_model(out)
    ids = np.random.default_rng(0).integers(0, 500, (2, 12))
    a, b = _logits(qat, ids), _logits(deployed, ids)
    assert np.array_equal(a.argmax(-1), b.argmax(-1))
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * np.abs(a).max())


def test_bits_per_weight_is_counted_from_the_stored_bytes(float_run, tmp_path):
    report = quantize(float_run, "w4a16_g32", "rtn", tmp_path, calib_batches=1)["bits"]
    with safe_open(tmp_path / DEPLOYED_FILE, "np") as f:
        meta = json.loads(f.metadata()["linears"])
    assert set(meta) == set(report["linears"])
    for name, m in report["linears"].items():
        k, n = meta[name]["in_features"], meta[name]["out_features"]
        # W4: K*N/2 bytes of codes, an fp16 step per 32 rows and column, one fp16 activation step
        assert m["weights"] == k * n
        assert m["bytes"] == k * n // 2 + (k // 32) * n * 2 + 2, name
    linears = report["parts"]["llm linears"]
    assert linears["bytes"] == sum(m["bytes"] for m in report["linears"].values())
    assert 4.5 < report["llm_linear_bpw"] < 4.6
    assert report["parts"]["llm other"]["weights"] > 0  # embeddings and norms, apart


def test_unknown_method_or_recipe_fails_before_any_work(float_run, tmp_path):
    with pytest.raises(ValueError, match="unknown method 'awq'"):
        quantize(float_run, "w4a16_g32", "awq", tmp_path)
    with pytest.raises(ValueError, match="w5"):
        quantize(float_run, "w5", "rtn", tmp_path)
    assert not any(tmp_path.iterdir())


def test_eval_quant_scores_every_cell_against_the_float_model(float_run, tmp_path):
    """`andesvl-jax eval-quant` end to end (one setting x method, 4 questions): the float row is
    consistent with itself, the quantized cell is scored and counted; a rerun reuses the cell."""
    from andesvl_jax.cli import main

    argv = ["eval-quant", "--checkpoint", str(float_run), "--out", str(tmp_path),
            "--settings", "w4a8_g32", "--methods", "rtn", "--samples", "4", "--calib-batches", "1"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads((tmp_path / "eval_quant.json").read_text())
    assert [(r["setting"], r["method"]) for r in rows] == [("float", "float"), ("w4a8_g32", "rtn")]
    ref, cell = rows
    assert ref["top1_consistency"] == 1.0 and ref["positions"] > 0
    assert 0.0 <= cell["top1_consistency"] <= 1.0 and cell["positions"] == ref["positions"]
    assert cell["perplexity"] > 1.0 and 4.5 < cell["bpw"] < 4.6
    assert (tmp_path / "eval_quant.md").read_text().count("| w4a8_g32 | rtn |") == 1
    assert (tmp_path / "eval_quant.png").is_file()
    stamp = (tmp_path / "w4a8_g32" / "rtn" / DEPLOYED_FILE).stat().st_mtime_ns
    assert main(argv) == 0  # the finished cell is not quantized again
    assert (tmp_path / "w4a8_g32" / "rtn" / DEPLOYED_FILE).stat().st_mtime_ns == stamp


def test_qat_from_a_run_keeps_the_run_architecture(tmp_path, make_config):
    """The qat stage config names the tiny preset; the run it starts from is narrower: QAT
    trains (and deploys) the run's architecture, not the preset's."""
    run = tmp_path / "narrow"
    train(make_config(steps=1, **{"model.text.intermediate_size": 96}), run)
    out = tmp_path / "qat_narrow"
    quantize(run, "w4a16_g32", "qat", out, steps=1)
    model, _ = load_model(out)
    assert model.cfg.text.intermediate_size == 96
