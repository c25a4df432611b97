"""mmproj.gguf (our vision tower + projector for libmtmd) checked in llama.cpp on both official tiny
fixtures: libmtmd's image embeddings of an AndesVL canvas against our tower + projector, and greedy
answers to the fixture's two-image prompt against our engine, and with a real Qwen3 vocabulary
llama.cpp's whole path (mtmd_tokenize + mtmd_helper_eval_chunks) against our engine; features no
graph expresses and a previous export are named errors."""

import dataclasses

import numpy as np
import pytest
from andesvl_jax.export.gguf import MODEL_FILE, export_gguf, write_llm
from andesvl_jax.export.gguf_mmproj import (
    MARKERS,
    MMPROJ_FILE,
    MmprojError,
    marker_strings,
    write_mmproj,
)
from andesvl_jax.export.outdir import OutputExistsError
from flax import nnx
from gguf_testing import qwen_tokenizer, require_llama_cpp

from andesvl_jax.data.patches import pack_images
from andesvl_jax.data.preprocess import ImageSpec, normalize
from andesvl_jax.infer.generate import greedy_generate
from andesvl_jax.infer.load import load_model
from andesvl_jax.models.qwen3 import Qwen3

# max |libmtmd - ours| / max |ours| of the image embeddings. The issue asks 2e-3 for the best graph.
# aimv2 -> glm4v: tower exact, projector constructed; measured ~1e-5 (docs/export.md).
# siglip2 -> kimik25: tanh GELUs through ggml's fp16 table (ours erf) and an F16 patch kernel;
# measured ~1.5e-3.
BOUNDS = {"andesvl_aimv2_tiny": 1e-4, "andesvl_siglip2_tiny": 2e-3}


@pytest.fixture(scope="module", params=sorted(BOUNDS))
def exported(request, fixtures_dir, tmp_path_factory):
    require_llama_cpp()
    from andesvl_jax.export.gguf_mtmd import MtmdVision
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    src = fixtures_dir / request.param
    out = export_gguf(src, tmp_path_factory.mktemp("mmproj") / "out")
    model, _ = load_model(src)
    llm = LlamaCpp(out / MODEL_FILE, n_ctx=128)
    tokens = model.cfg.tokens
    vision = MtmdVision(llm, out / MMPROJ_FILE, marker_ids=(tokens.img_start, tokens.img_end))
    return request.param, src, model, vision


def _ours(model, canvas: np.ndarray) -> np.ndarray:
    cfg = model.cfg.vision
    spec = ImageSpec(flavour=cfg.flavour, patch_size=cfg.patch_size)
    packed = pack_images([[normalize(canvas, spec)]], cfg.patch_size)
    tokens, _ = model.projector(model.vision(packed), packed.segment_ids)
    return np.asarray(tokens)[0]


def test_image_embeddings_match_our_tower(exported, fixtures_dir):
    name, src, model, vision = exported
    p = model.cfg.vision.patch_size
    canvases = [
        np.random.default_rng(0).integers(0, 256, (4 * p, 8 * p, 3), dtype=np.uint8),
        np.load(src / "inputs.npz")["preprocessed_image_0"],
    ]
    for canvas in canvases:
        ours, got = _ours(model, canvas), vision.image_embeddings(canvas, p)
        assert got.shape == ours.shape
        rel = float(np.abs(got - ours).max() / np.abs(ours).max())
        assert rel < BOUNDS[name], (name, canvas.shape, rel)


def test_greedy_answer_matches_our_engine(exported):
    name, src, model, vision = exported
    inputs = np.load(src / "inputs.npz")
    n = np.load(src / "expected.npz")["generated_ids"].shape[1]
    pixels = [inputs[f"pixel_values_{i}"] for i in range(2)]
    images = pack_images([pixels], model.cfg.vision.patch_size)
    ours = greedy_generate(model, inputs["input_ids"], images, inputs["image_flags"], n)
    canvases = [inputs[f"preprocessed_image_{i}"] for i in range(2)]
    got = vision.greedy(
        inputs["input_ids"][0], model.cfg.tokens.image_pad, canvases, model.cfg.vision.patch_size, n
    )
    assert got == np.asarray(ours)[0].tolist()


def test_a_real_vocabulary_runs_llama_cpps_whole_multimodal_path(fixtures_dir, tmp_path):
    """The fixture's vision tower with a random one-layer Qwen3 on the real Qwen3 vocabulary: the
    LLM GGUF names our <img> / </img> ids as libmtmd's markers, and a text prompt with a media
    marker, tokenized and evaluated by libmtmd, answers as our engine does."""
    require_llama_cpp()
    from andesvl_jax.export.gguf_mtmd import MtmdVision
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    model, _ = load_model(fixtures_dir / "andesvl_aimv2_tiny")
    tok = qwen_tokenizer()
    t = tok.special_tokens
    text = dataclasses.replace(model.cfg.text, vocab_size=151936, num_layers=1)
    model.llm = Qwen3(text, rngs=nnx.Rngs(0), scan=False)
    model.cfg = model.cfg.replace(text=text, tokens=t)
    write_llm(model, tok, tmp_path / MODEL_FILE, renamed=marker_strings(t))
    write_mmproj(model, tmp_path / MMPROJ_FILE)
    llm = LlamaCpp(tmp_path / MODEL_FILE, n_ctx=64)
    assert llm.tokenize("".join(MARKERS)) == [t.img_start, t.img_end]
    vision = MtmdVision(llm, tmp_path / MMPROJ_FILE)  # markers from the model's own vocabulary
    canvas = np.random.default_rng(1).integers(0, 256, (56, 112, 3), dtype=np.uint8)
    before, after = "<|im_start|>user\n", "\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"
    ids = [*tok.encode(before), t.img_start, *[t.image_pad] * 8, t.img_end, *tok.encode(after)]
    ids = np.asarray([ids], np.int32)
    images = pack_images([[normalize(canvas, ImageSpec("aimv2", 14))]], 14)
    ours = np.asarray(greedy_generate(model, ids, images, ids == t.image_pad, 6))[0].tolist()
    marker = vision.marker.decode()
    assert vision.greedy_text(before + marker + after, [canvas], 14, 6) == ours


def test_a_canvas_llama_cpp_would_resize_is_refused(exported):
    from andesvl_jax.export.gguf_runtime import RuntimeFailure

    _, _, model, vision = exported
    p = model.cfg.vision.patch_size
    with pytest.raises(RuntimeFailure, match="canvas"):
        vision.image_embeddings(np.zeros((4 * p + 3, 8 * p, 3), np.uint8), p)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda v: {"use_rope2d": False}, "vision.use_rope2d"),
        (lambda v: {"rope_theta": 5e5}, "vision.rope_theta"),
        (lambda v: {"pos_interpolation": "bilinear_aa"}, "vision.pos_interpolation"),
    ],
)
def test_a_tower_no_graph_expresses_is_a_named_error(fixtures_dir, tmp_path, change, field):
    model, _ = load_model(fixtures_dir / "andesvl_siglip2_tiny")
    model.cfg = model.cfg.replace(vision=dataclasses.replace(model.cfg.vision, **change(None)))
    with pytest.raises(MmprojError, match=field):
        write_mmproj(model, tmp_path / MMPROJ_FILE)
    assert not (tmp_path / MMPROJ_FILE).exists()


def test_a_quantized_tower_is_a_named_error(fixtures_dir, tmp_path):
    from andesvl_jax.compress.qlinear import quantize_model

    model, _ = load_model(fixtures_dir / "andesvl_aimv2_tiny")
    quantize_model(model, "w4a16_g32_vit_w8a8")
    with pytest.raises(MmprojError, match=r"vision\.layers\.attn\.\w+: a quantized linear"):
        write_mmproj(model, tmp_path / MMPROJ_FILE)


def test_no_mmproj_and_overwrite(fixtures_dir, tmp_path):
    src = fixtures_dir / "andesvl_aimv2_tiny"
    out = export_gguf(src, tmp_path / "out", mmproj=False)
    assert sorted(p.name for p in out.iterdir()) == [MODEL_FILE]
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_gguf(src, out)
    export_gguf(src, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MMPROJ_FILE, MODEL_FILE]
