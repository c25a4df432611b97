"""Deployed integer weights -> GGUF Q8_0/Q4_0 with our codes and fp16 steps unchanged: the GGUF's
dequantized weights equal our deployed weights bit for bit (W4 g32, W8 per channel, the W8 token
table); what has no exact form (asymmetric, W3, A8) is an error naming the field; llama.cpp runs
the file."""

import dataclasses

import gguf
import numpy as np
import pytest
from andesvl_jax.export.gguf import write_llm
from andesvl_jax.export.gguf_quant import QuantMappingError, check_exact
from andesvl_jax.export.verify import OurEngine
from andesvl_jax.kernels.quant_format import dequantize_weight
from gguf_testing import require_llama_cpp, tiny_model, token_batch

from andesvl_jax.compress.calibrate import calibrate_activations
from andesvl_jax.compress.deploy import DeployMeta, deploy, deployed_linears
from andesvl_jax.compress.qlinear import needs_calibration, quantize_model
from andesvl_jax.compress.rules import QuantRule

GGUF_NAMES = {"attn/q": "attn_q", "attn/k": "attn_k", "attn/v": "attn_v", "attn/o": "attn_output",
              "mlp/gate": "ffn_gate", "mlp/up": "ffn_up", "mlp/down": "ffn_down"}  # fmt: skip


def deployed_model(rules):
    model = quantize_model(tiny_model(), rules)
    if needs_calibration(model):
        calibrate_activations(model, lambda m: m(token_batch(1)))
    return deploy(model, separate_layers=True)


def gguf_name(name: str) -> str:
    if name == "llm/embed":
        return "token_embd.weight"
    _, _, i, kind, lin = name.split("/")
    return f"blk.{i}.{GGUF_NAMES[f'{kind}/{lin}']}.weight"


# weight-only (the activation rule does not change the weights; A16 is mapped the same way)
W4_W8_EMB = (  # layer 0 only (test time): layer 1 stays float in the same file
    QuantRule(r"^llm/layers/0/attn/", 8, None),
    QuantRule(r"^llm/layers/0/mlp/", 4, 32),
    QuantRule(r"^llm/embed$", 8, None, kind="embedding"),
)


@pytest.fixture(scope="module")
def w4_w8(tmp_path_factory):
    model = deployed_model(W4_W8_EMB)
    path = tmp_path_factory.mktemp("q") / "model.gguf"
    write_llm(model, None, path, quant="f32")
    return model, path


def test_dequantized_gguf_equals_deployed_weights_bit_for_bit(w4_w8):
    model, path = w4_w8
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    checked = set()
    for _, names, linear in deployed_linears(model):
        ours = np.asarray(dequantize_weight(linear.weight())).T  # [N, K]
        t = tensors[gguf_name(names[0])]
        want_type = {8: "Q8_0", 4: "Q4_0"}[linear.meta.bits]
        assert t.tensor_type.name == want_type
        theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours.shape)
        assert theirs.dtype == ours.dtype == np.float32
        np.testing.assert_array_equal(theirs, ours)
        checked.add(want_type)
    assert checked == {"Q8_0", "Q4_0"}


def test_no_exact_form_is_an_error_naming_the_field():
    base = DeployMeta(4, 32, 32, 64, 128, False, None, False, False, False)
    cases = {
        "zero_point=True": dataclasses.replace(base, zero_point=True),
        "bits=3": dataclasses.replace(base, bits=3),
        "act_bits=8": dataclasses.replace(base, act_bits=8),
        "group=16": dataclasses.replace(base, group=16, pack_group=16),
    }
    for field, meta in cases.items():
        with pytest.raises(QuantMappingError, match=rf"llm/layers/0/mlp/up: .*{field}"):
            check_exact(meta, "llm/layers/0/mlp/up")
    check_exact(dataclasses.replace(base, act_bits=16), "a16")  # A16: the weights map exactly


def test_llama_cpp_runs_the_deployed_gguf(w4_w8):
    require_llama_cpp()
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    model, path = w4_w8
    ids = list(range(40, 104))
    want = OurEngine(model).logits(ids)
    got = LlamaCpp(path, n_ctx=128).logits(ids)
    # llama.cpp rounds activations to Q8_0 in its quantized dots (ours: int16 codes)
    agree = np.mean(np.argmax(got, -1) == np.argmax(want, -1))
    assert agree >= 0.8, agree  # a random tiny model has near-tie logits; a wrong layout ~0
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < 0.1


def test_header_file_type_is_the_type_holding_most_weights():
    from andesvl_jax.export.gguf import file_type
    from andesvl_jax.export.gguf_tensors import GGUFTensor

    q = gguf.GGMLQuantizationType
    w4 = gguf.quants.quantize(np.ones((64, 64), np.float32), q.Q4_0)  # 4096 weights
    emb = np.ones((32, 64), np.float32)  # 2048 weights kept float
    norm = np.ones((64 * 64 * 4,), np.float32)  # 1-D: not a weight matrix, never counted
    tensors = [GGUFTensor("w", w4, q.Q4_0), GGUFTensor("e", emb, q.F32), GGUFTensor("n", norm, q.F32)]
    assert file_type(tensors) == gguf.LlamaFileType.MOSTLY_Q4_0
    assert file_type(tensors[1:]) == gguf.LlamaFileType.ALL_F32
