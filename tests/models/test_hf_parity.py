"""Parity with HF `transformers` reference implementations built tiny and random (fp32, CPU)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from andesvl_jax.convert.loader import load_checkpoint  # noqa: E402
from andesvl_jax.convert.torch_reference import randomise  # noqa: E402
from andesvl_jax.data.patches import pack_images  # noqa: E402


def assert_close(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    tol = 1e-4 * max(1.0, np.abs(ref).max())
    assert np.abs(ours - ref).max() <= tol, np.abs(ours - ref).max()


def raster(features, images, row):
    """Our packed 2x2-order features of batch row `row` -> {segment: [h*w, d] in row-major patch order}."""
    out = {}
    seg = images.segment_ids[row]
    for s in sorted(set(seg[seg > 0].tolist())):
        idx = np.nonzero(seg == s)[0]
        order = np.lexsort((images.cols[row, idx], images.rows[row, idx]))
        out[s] = np.asarray(features[row])[idx[order]]
    return out


@pytest.mark.parametrize("tie", [True, False])
def test_qwen3_logits_match_transformers(tmp_path, tie):
    cfg = transformers.Qwen3Config(
        vocab_size=97,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rope_theta=1e4,
        tie_word_embeddings=tie,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    ref = randomise(transformers.Qwen3ForCausalLM(cfg), 0).eval()
    ref.config._attn_implementation = "eager"
    ref.save_pretrained(tmp_path)
    ids = np.random.default_rng(0).integers(0, 97, (2, 13))
    with torch.no_grad():
        expected = ref(torch.from_numpy(ids)).logits.numpy()
    for scan in (True, False):
        llm, report = load_checkpoint(tmp_path, overrides={"scan_layers": scan})
        assert report.model_type == "qwen3"
        positions = jnp.broadcast_to(jnp.arange(13), (2, 13))
        hidden, _ = llm(llm.embed(jnp.asarray(ids)), positions, jnp.ones((2, 13), jnp.int32))
        assert_close(llm.logits(hidden), expected)


def test_siglip2_vision_matches_transformers(tmp_path):
    """HF Siglip2 (no RoPE, bilinear anti-aliased position resize, padded batch) vs our packed NaViT."""
    cfg = transformers.Siglip2VisionConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_patches=16,
        patch_size=8,
    )
    torch.manual_seed(0)
    ref = randomise(transformers.Siglip2VisionModel(cfg), 1).eval()
    ref.config._attn_implementation = "eager"
    ref.save_pretrained(tmp_path)
    rng = np.random.default_rng(1)
    # grids 2x6 (shrinks rows: anti-aliasing matters) and 6x4 (grows both)
    imgs = [
        rng.standard_normal((3, 16, 48)).astype(np.float32),
        rng.standard_normal((3, 48, 32)).astype(np.float32),
    ]
    p, max_patches = 8, 24
    pixel = np.zeros((2, max_patches, 3 * p * p), np.float32)
    mask = np.zeros((2, max_patches), np.int64)
    shapes = []
    for b, img in enumerate(imgs):
        h, w = img.shape[1] // p, img.shape[2] // p
        pixel[b, : h * w] = img.reshape(3, h, p, w, p).transpose(1, 3, 2, 4, 0).reshape(h * w, -1)
        mask[b, : h * w] = 1
        shapes.append((h, w))
    with torch.no_grad():
        out = ref(
            pixel_values=torch.from_numpy(pixel),
            pixel_attention_mask=torch.from_numpy(mask),
            spatial_shapes=torch.tensor(shapes),
        ).last_hidden_state.numpy()
    vision, report = load_checkpoint(tmp_path)
    assert report.ignored and all(".head." in "." + k for k in report.ignored)
    packed = pack_images([imgs], p)  # both images in ONE packed row
    ours = raster(vision(packed), packed, 0)
    for b, (h, w) in enumerate(shapes):
        assert_close(ours[b + 1], out[b, : h * w])


def test_aimv2_vision_matches_transformers(tmp_path):
    cfg = transformers.Aimv2VisionConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=56,
        patch_size=14,
        use_head=False,
    )
    torch.manual_seed(0)
    ref = randomise(transformers.Aimv2VisionModel(cfg), 2).eval()
    ref.config._attn_implementation = "eager"
    ref.save_pretrained(tmp_path)
    img = np.random.default_rng(2).standard_normal((3, 56, 56)).astype(np.float32)
    with torch.no_grad():
        out = ref(pixel_values=torch.from_numpy(img[None])).last_hidden_state.numpy()
    vision, _ = load_checkpoint(tmp_path)
    packed = pack_images([[img]], 14)
    assert_close(raster(vision(packed), packed, 0)[1], out[0])
