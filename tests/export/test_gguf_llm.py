"""GGUF LLM export checked in llama.cpp: the official fixture's f32 export gives the official logits
from its image-merged input embeddings (llama_batch.embd) and our engine's logits from token ids,
within 1e-4 x max(1, max|ref|), with identical greedy tokens; bad input is a named error and never
leaves a complete-looking OUTDIR."""

import dataclasses

import numpy as np
import pytest
from andesvl_jax.export.gguf import MODEL_FILE, export_gguf, write_llm
from andesvl_jax.export.gguf_tensors import ArchitectureError, llm_tensors
from andesvl_jax.export.outdir import OutputExistsError
from andesvl_jax.export.verify import OurEngine
from flax import nnx
from gguf_testing import require_llama_cpp

from andesvl_jax.config import TINY_TEXT, get_preset
from andesvl_jax.convert.loader import export_official
from andesvl_jax.infer.engine import decoding_layout
from andesvl_jax.infer.load import load_model
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.models.qwen3 import Qwen3
from andesvl_jax.models.vit import VisionEncoder

TOL = 1e-4


def close(got, want) -> float:
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


@pytest.fixture(scope="module")
def exported(fixtures_dir, tmp_path_factory):
    require_llama_cpp()
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    src = fixtures_dir / "andesvl_siglip2_tiny"
    out = export_gguf(src, tmp_path_factory.mktemp("gguf") / "out")
    return src, LlamaCpp(out / MODEL_FILE, n_ctx=128)


def test_image_embeddings_give_the_official_logits_and_tokens(exported):
    src, runtime = exported
    expected = np.load(src / "expected.npz")
    embeds = expected["inputs_embeds"][0]
    assert close(runtime.embeds_logits(embeds), expected["logits"][0]) < TOL
    n = expected["generated_ids"].shape[1]
    assert runtime.greedy_embeds(embeds, n) == expected["generated_ids"][0].tolist()


def test_token_ids_give_our_engine_logits_and_tokens(exported, tmp_path):
    src, runtime = exported
    model, tok = load_model(src)
    ours = OurEngine(model)
    ids = [481, *range(65, 110), 482, 10, 481]
    assert close(runtime.logits(ids), ours.logits(ids)) < TOL
    assert runtime.greedy(ids, 8) == ours.greedy(ids, 8)
    # the engine's decoding layout (kernels stored [out, in]) exports the same file
    write_llm(decoding_layout(model), tok, tmp_path / "rows.gguf", name=src.name)
    assert (tmp_path / "rows.gguf").read_bytes() == (runtime.path).read_bytes()


def test_existing_outdir_needs_overwrite(fixtures_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MODEL_FILE).write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_gguf(fixtures_dir / "andesvl_siglip2_tiny", out)
    assert (out / MODEL_FILE).read_bytes() == b"old"


def test_failed_export_leaves_no_outdir(tmp_path):
    text = dataclasses.replace(TINY_TEXT, hidden_size=48, num_heads=3, num_kv_heads=1)
    model = Qwen3(text, rngs=nnx.Rngs(0), scan=False)
    with pytest.raises(ArchitectureError, match=r"token_embd.weight: row length 48 .* Q4_0"):
        llm_tensors(model, "q4_0")
    with pytest.raises(ValueError, match="--quant 'q3_k'"):
        llm_tensors(model, "q3_k")
    path = tmp_path / MODEL_FILE
    with pytest.raises(ArchitectureError):
        write_llm(model, None, path, quant="q4_0")
    assert not path.exists()


def test_every_float_type_loads(fixtures_dir, tmp_path):
    require_llama_cpp()
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    model, _ = load_model(fixtures_dir / "andesvl_siglip2_tiny")
    ids = list(range(40, 72))
    want = OurEngine(model).logits(ids)
    for quant, tol in (("f16", 2e-2), ("bf16", 5e-2), ("q8_0", 1e-1)):
        write_llm(model, None, tmp_path / f"{quant}.gguf", quant=quant)
        got = LlamaCpp(tmp_path / f"{quant}.gguf", n_ctx=64).logits(ids)
        assert close(got, want) < tol, quant


def test_no_llm_or_no_tokenizer_is_a_named_error(tmp_path):
    vision = VisionEncoder(get_preset("tiny").vision, rngs=nnx.Rngs(0))
    with pytest.raises(ArchitectureError, match=r"VisionEncoder: no Qwen3 language model"):
        llm_tensors(vision)
    cfg = get_preset("tiny", scan_layers=False)
    big_vocab = cfg.replace(text=dataclasses.replace(cfg.text, vocab_size=1024))
    export_official(AndesVL(big_vocab, rngs=nnx.Rngs(0)), tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match=r"ckpt: no tokenizer.json"):
        export_gguf(tmp_path / "ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()
