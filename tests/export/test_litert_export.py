"""LiteRT-LM export of the LLM: the `.tflite` signatures reproduce our logits, the LiteRT-LM Engine's
greedy output equals our engine's (fp32 and int8), and bad requests fail with clear errors."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="LiteRT export needs tensorflow-cpu (test extra)")
pytest.importorskip("litert_lm", reason="LiteRT-LM runtime checks need litert-lm (test extra)")
pytest.importorskip("ai_edge_litert", reason="signature checks need ai-edge-litert (test extra)")

from andesvl_jax.export.litert_export import export_litertlm  # noqa: E402
from andesvl_jax.export.litert_graph import (  # noqa: E402
    SignaturePlan,
    check_expressible,
    reference_logits,
)
from andesvl_jax.export.litert_runtime import open_runner  # noqa: E402
from flax import nnx  # noqa: E402

from andesvl_jax.cli import main  # noqa: E402
from andesvl_jax.config import TextConfig, get_preset  # noqa: E402
from andesvl_jax.convert.loader import export_official  # noqa: E402
from andesvl_jax.infer.generate import greedy_generate  # noqa: E402
from andesvl_jax.infer.load import load_model  # noqa: E402
from andesvl_jax.models.andesvl import AndesVL  # noqa: E402

PREFILL, CONTEXT = (4, 8), 64
PROMPTS = [
    "hi",
    "hello there",
    "what is 2+3?",
    "<|im_start|>user\ncount the dots<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog.",
    "a" * 13,
    "0123456789",
    "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nname a colour<|im_end|>\n",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    export_official(AndesVL(get_preset("tiny"), rngs=nnx.Rngs(7)), path)
    return path


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_model(checkpoint)


@pytest.fixture(scope="module", params=["none", "int8"])
def bundle(request, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("litert") / f"model_{request.param}.litertlm"
    export_litertlm(checkpoint, out, quant=request.param, prefill_lengths=PREFILL, context=CONTEXT)
    return request.param, out


def ours_text(model, tok, ids, n):
    """Our engine's greedy continuation as text, cut before the first stop token."""
    out = np.asarray(greedy_generate(model, np.asarray([ids], np.int32), max_new_tokens=n))[0]
    stops = {tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>")}
    cut = next((i for i, t in enumerate(out) if int(t) in stops), len(out))
    return tok.decode(out[:cut]), out


def test_signature_logits_match_our_model(bundle, checkpoint, loaded):
    quant, path = bundle
    model, tok = loaded
    runner = open_runner(path, checkpoint)
    ids = tok.encode(PROMPTS[4]).tolist()  # 44 tokens: prefill_8 and prefill_4 chunks, padding, decode
    got, want = runner.logits(ids), reference_logits(model.llm, ids)
    assert got.shape == want.shape == (len(ids), model.cfg.text.vocab_size)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < (1e-5 if quant == "none" else 0.05), err
    if quant == "none":
        assert (got.argmax(-1) == want.argmax(-1)).all()


def test_engine_greedy_equals_our_engine(bundle, checkpoint, loaded):
    """fp32: the Engine's text and the signature runners' ids equal our engine's on 8 prompts.
    int8 (dynamic range) on a random model: near-tied logits flip, so only the Engine against the
    same .tflite in the interpreter is checked here; parity with ours is measured on the trained
    demo checkpoint (docs/export.md)."""
    quant, path = bundle
    model, tok = loaded
    runner = open_runner(path, checkpoint)
    for prompt in PROMPTS:
        ids = tok.encode(prompt).tolist()
        if quant == "none":
            want, want_ids = ours_text(model, tok, ids, 8)
            assert runner.signature_greedy(ids, 8) == want_ids.tolist(), (quant, prompt)
        else:
            stops = (tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>"))
            got = runner.signature_greedy(ids, 8, stop=stops)
            want = tok.decode([t for t in got if t not in stops])
        assert runner.greedy_text(ids, 8) == want, (quant, prompt)


def test_cli_writes_and_refuses_to_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.litertlm"
    args = ["export", "litertlm", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--prefill", "8", "--context", "32"]) == 0
    assert out.stat().st_size > 0 and "wrote" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(args)
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"quant": "int3"}, ValueError, "int3"),
        ({"out_name": "model.tflite"}, ValueError, ".litertlm"),
        ({"prefill_lengths": (64,), "context": 32}, ValueError, "context 32"),
    ],
)
def test_bad_requests(checkpoint, tmp_path, kwargs, error, match):
    out = tmp_path / kwargs.pop("out_name", "m.litertlm")
    with pytest.raises(error, match=match):
        export_litertlm(checkpoint, out, **kwargs)


def test_inexpressible_architecture_names_the_field():
    with pytest.raises(ValueError, match="num_kv_heads"):
        check_expressible(TextConfig(num_heads=4, num_kv_heads=3))


def test_plan_sizes_the_cache_past_the_context():
    plan = SignaturePlan((8, 32), 128)
    assert plan.cache_slots == 128 + 31
    assert list(plan.signatures()) == ["prefill_8", "prefill_32", "decode"]

