"""LiteRT-LM export of a deployed W8 model keeps our int8 codes and per-channel steps: the .tflite's
int8 weights equal ours bit for bit (linears and the W8 token table), its signatures' logits follow
our deployed engine within the dynamic-range activation rounding, the Engine runs it, and a model
with no exact int8 form (W4 g32, zero points, -128 codes, --quant none) is a named error."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="LiteRT export needs tensorflow-cpu (test extra)")
pytest.importorskip("litert_lm", reason="LiteRT-LM runtime checks need litert-lm (test extra)")
pytest.importorskip("ai_edge_litert", reason="signature checks need ai-edge-litert (test extra)")

from andesvl_jax.export.litert_export import export_litertlm  # noqa: E402
from andesvl_jax.export.litert_graph import reference_logits  # noqa: E402
from andesvl_jax.export.litert_runtime import LiteRTRunner, bundle_tflite  # noqa: E402
from andesvl_jax.export.litert_w8 import (  # noqa: E402
    Int8MappingError,
    Int8Weight,
    check_codes,
    check_int8,
    float_twin,
    int8_weights,
    patch_int8,
    weight_tensors,
)
from andesvl_jax.kernels.quant_format import dequantize_weight  # noqa: E402
from flax import nnx  # noqa: E402

from andesvl_jax.compress.calibrate import calibrate_activations  # noqa: E402
from andesvl_jax.compress.deploy import DeployMeta, deploy, deployed_linears  # noqa: E402
from andesvl_jax.compress.qlinear import needs_calibration, quant_sites, quantize_model  # noqa: E402
from andesvl_jax.compress.rules import RECIPES, QuantRule  # noqa: E402
from andesvl_jax.config import get_preset  # noqa: E402
from andesvl_jax.convert.loader import export_official  # noqa: E402
from andesvl_jax.infer.load import load_model  # noqa: E402
from andesvl_jax.models.andesvl import AndesVL  # noqa: E402

PREFILL, CONTEXT = (8,), 64
PROMPTS = ["hello there", "The quick brown fox jumps over the lazy dog."]  # 2 and 44 tokens
# W8A16 per channel on every LLM linear and the token table (the tied head) W8 per token row
W8_EMB = (*RECIPES["w8a16"], QuantRule(r"^llm/embed$", 8, None, kind="embedding"))


def deployed(model, rules, calib: list[list[int]], widen: float = 1.1):
    """`model` quantized by `rules`, calibrated on the prompts (ids) `calib` and deployed. widen: every
    weight step times this (fp16-rounded by the quantizer), as QAT-learned steps are: the codes
    then stop short of 127, where the converter's absmax re-derivation gives other codes/steps."""
    q = quantize_model(nnx.clone(model), rules)
    for site in quant_sites(q):
        site.module.w_scale.set_value(site.module.w_scale[...] * widen)
    if needs_calibration(q):
        calibrate_activations(q, lambda m: [reference_logits(m.llm, ids) for ids in calib])
    return deploy(q, separate_layers=True)


def stored_weights(tflite: bytes):
    """(int8 [(codes [N, K], scales [N])], float32 {shape: [arrays]}) of the 2-D constant weights
    of `tflite`, one per buffer."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    int8 = []
    for b, ts in weight_tensors(model).items():
        codes = np.asarray(model.buffers[b].data, np.uint8).view(np.int8).reshape(ts[0].shape)
        int8.append((codes, np.asarray(ts[0].quantization.scale, np.float32)))
    floats, seen = {}, set()
    for t in (t for sg in model.subgraphs for t in sg.tensors):
        data = model.buffers[t.buffer].data
        if t.type == 0 and len(t.shape) == 2 and data is not None and t.buffer not in seen:
            seen.add(t.buffer)
            array = np.asarray(data, np.uint8).view(np.float32).reshape(t.shape)
            floats.setdefault(tuple(t.shape), []).append(array)
    return int8, floats


def calibration_ids(tok) -> list[list[int]]:
    """The test prompts' ids: static activation steps calibrated on what the test runs (a token
    never seen in calibration can clip, which is our deployed model's error, not the export's)."""
    return [tok.encode(p).tolist() for p in PROMPTS]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    export_official(AndesVL(get_preset("tiny"), rngs=nnx.Rngs(7)), path)
    return load_model(path)


@pytest.fixture(scope="module")
def w8(loaded, tmp_path_factory):
    model, tok = loaded
    ours = deployed(model, W8_EMB, calibration_ids(tok))
    out = tmp_path_factory.mktemp("litert") / "w8.litertlm"
    export_litertlm("w8", out, quant="int8", prefill_lengths=PREFILL, context=CONTEXT,
                    model_and_tokenizer=(ours, tok))  # fmt: skip
    return ours, out


def test_float_twin_holds_codes_times_steps_exactly(w8):
    ours, _ = w8
    twin = float_twin(ours)
    assert not list(deployed_linears(twin)) and list(deployed_linears(ours))  # input untouched
    for w in int8_weights(ours):
        layer = twin.llm.embed if w.name == "llm/embed" else None
        if layer is None:
            _, _, i, kind, lin = w.name.split("/")
            layer = getattr(getattr(twin.llm.layers[int(i)], kind), lin)
            got = np.asarray(layer.kernel[...]).T
        else:
            got = np.asarray(layer.embedding[...])
        np.testing.assert_array_equal(got, w.codes.astype(np.float32) * w.steps[:, None])


def test_tflite_int8_weights_are_our_codes_and_steps(w8):
    ours, path = w8
    weights = int8_weights(ours)
    assert len(weights) == 1 + 7 * ours.cfg.text.num_layers
    assert any(np.abs(w.codes).max() < 127 for w in weights)  # the converter's absmax differs
    stored, floats = stored_weights(bundle_tflite(path))
    assert len(stored) == len(weights)  # nothing else was quantized, nothing left unpatched
    table = next(w for w in weights if w.name == "llm/embed")  # the lookup's float copy: exact
    (lookup,) = floats[table.codes.shape]
    np.testing.assert_array_equal(lookup, table.codes.astype(np.float32) * table.steps[:, None])
    for w in weights:
        same = [
            (c, s) for c, s in stored if c.shape == w.codes.shape and np.array_equal(c, w.codes)
        ]
        assert len(same) == 1, w.name
        np.testing.assert_array_equal(same[0][1], w.steps)
        lin = next(m for _, names, m in deployed_linears(ours) if names == (w.name,))
        want = np.asarray(lin.scales[...][0]).astype(np.float32)  # our fp16 steps, exact
        np.testing.assert_array_equal(w.steps, want)
        k = lin.meta.in_features
        np.testing.assert_array_equal(
            same[0][0].astype(np.float32).T * same[0][1],
            np.asarray(dequantize_weight(lin.weight()))[:k],
        )


def test_unmatched_or_ambiguous_linear_is_an_error(w8):
    ours, path = w8
    tflite = bundle_tflite(path)
    q = next(w for w in int8_weights(ours) if w.name == "llm/layers/0/attn/q")
    other = Int8Weight("llm/layers/9/attn/q", np.roll(q.codes, 1, axis=1), q.steps)
    with pytest.raises(Int8MappingError, match=r"llm/layers/9/attn/q: .*found none"):
        patch_int8(tflite, [other])
    with pytest.raises(Int8MappingError, match="match the same .tflite weight"):
        patch_int8(tflite, [q, dataclasses.replace(q, name="llm/layers/9/attn/q")])


def test_signature_logits_and_engine_follow_our_deployed_engine(w8, loaded):
    """The runtime quantizes activations to int8 per row at run time (ours: static int16 codes),
    so logits agree to that rounding: measured max |diff| / max |logit| 0.024-0.027 here."""
    ours, path = w8
    _, tok = loaded
    runner = LiteRTRunner(path, tok)
    for prompt in PROMPTS:
        ids = tok.encode(prompt).tolist()
        got, want = runner.logits(ids), reference_logits(ours.llm, ids)
        err = np.abs(got - want).max() / np.abs(want).max()
        print(f"{prompt!r}: max abs diff / max abs logit {err:.4f}")
        assert err < 0.05, (prompt, err)
        stops = (tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>"))
        sig = runner.signature_greedy(ids, 4, stop=stops)
        assert runner.greedy_text(ids, 4) == tok.decode([t for t in sig if t not in stops])


def test_w4_g32_model_is_a_named_error(loaded, tmp_path):
    model, tok = loaded
    out = tmp_path / "m.litertlm"
    with pytest.raises(Int8MappingError, match=r"llm/layers/0/.*bits=4 .*group=32"):
        export_litertlm("w4", out, quant="int8",
                        model_and_tokenizer=(deployed(model, "w4_g32", [], 1.0), tok))  # fmt: skip
    assert not out.exists()


def test_codes_at_minus_128_are_refused_unless_full_range(loaded, tmp_path):
    """Steps below absmax (as GPTQ/QAT give) clip the most negative weights to -128: outside
    TFLite's [-127, 127] int8 weights, so refused by name unless int8_full_range keeps them."""
    model, tok = loaded
    rules = (QuantRule(r"^llm/layers/\d+/(attn|mlp)/", 8, None, act="none"),)
    ours = deployed(model, rules, [], widen=0.9)
    out = tmp_path / "m.litertlm"
    with pytest.raises(Int8MappingError, match=r"llm/layers/0/attn/\w+: codes: \d+ weight.*-128"):
        export_litertlm("w8", out, quant="int8", model_and_tokenizer=(ours, tok))
    assert not out.exists()
    kept = int8_weights(ours, full_range=True)
    assert all(w.codes.min() == -128 for w in kept)


def test_deployed_model_needs_quant_int8(w8, loaded, tmp_path):
    ours, tok = w8[0], loaded[1]
    with pytest.raises(ValueError, match="--quant 'none'.*int8"):
        export_litertlm("w8", tmp_path / "m.litertlm", model_and_tokenizer=(ours, tok))


def test_no_exact_int8_form_names_the_field():
    base = DeployMeta(8, None, 64, 64, 128, False, 16, False, False, False)
    check_int8(base, "ok")
    cases = {
        "zero_point=True": dataclasses.replace(base, zero_point=True),
        "bits=4": dataclasses.replace(base, bits=4),
        "group=32": dataclasses.replace(base, group=32, pack_group=32),
    }
    for field, meta in cases.items():
        with pytest.raises(Int8MappingError, match=rf"llm/layers/1/mlp/up: .*{field}"):
            check_int8(meta, "llm/layers/1/mlp/up")
    check_codes(np.array([[-127, 127]]), "ok")
    with pytest.raises(Int8MappingError, match=r"llm/layers/1/mlp/up: codes: 1 .*-128"):
        check_codes(np.array([[-128, 127]]), "llm/layers/1/mlp/up")
