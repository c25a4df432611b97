"""Model properties: ablation switches, NaViT packing, odd shapes, KV cache, scan/remat equivalence."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.data.patches import pack_images
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.models.kv_cache import KVCache
from andesvl_jax.models.vit import VisionEncoder

CFG = get_preset("tiny")


def image(h, w, seed):
    return np.random.default_rng(seed).standard_normal((3, h, w)).astype(np.float32)


def vision(**changes):
    cfg = dataclasses.replace(CFG.vision, **changes)
    return VisionEncoder(cfg, rngs=nnx.Rngs(0))


def test_rope2d_off_equals_zero_rotation():
    """2D-RoPE off computes exactly RoPE on with every patch at angle zero (and nothing else changes)."""
    packed = pack_images([[image(56, 84, 0)]], 14)
    on, off = (
        vision(use_rope2d=True, use_abs_pos=False),
        vision(use_rope2d=False, use_abs_pos=False),
    )
    nnx.update(off, nnx.state(on))
    at_origin = packed._replace(rows=np.zeros_like(packed.rows), cols=np.zeros_like(packed.cols))
    np.testing.assert_allclose(on(at_origin), off(packed), atol=1e-6)
    assert not np.allclose(on(packed), off(packed), atol=1e-3)


def test_images_packed_together_equal_images_encoded_alone():
    """Attention is blocked across images: packing must not change any image's features."""
    enc = vision()
    imgs = [image(56, 84, 1), image(28, 28, 2), image(112, 28, 3)]
    together = enc(pack_images([imgs], 14, max_patches=96))
    start = 0
    for img in imgs:
        alone = enc(pack_images([[img]], 14))
        n = alone.shape[1]
        np.testing.assert_allclose(together[0, start : start + n], alone[0], atol=1e-5)
        start += n


@pytest.mark.parametrize("size", [(28, 28), (28, 1008), (1008, 28), (42 * 2, 14 * 2), (140, 56)])
def test_odd_sizes_and_extreme_aspect_ratios(size):
    h, w = size
    model = AndesVL(CFG, rngs=nnx.Rngs(0))
    packed = pack_images([[image(h, w, 4)]], 14)
    tokens, valid = model.encode_images(packed)
    n = (h // 28) * (w // 28)
    assert tokens.shape == (1, n, CFG.text.hidden_size) and bool(valid.all())
    assert np.isfinite(np.asarray(tokens)).all()


def test_pixel_shuffle_switch_changes_token_count_and_projector_width():
    no_shuffle = CFG.replace(pixel_shuffle=False)
    model = AndesVL(no_shuffle, rngs=nnx.Rngs(0))
    assert model.projector.mlp.fc1.kernel.shape == (CFG.vision.hidden_size, CFG.vision.hidden_size)
    packed = pack_images([[image(56, 84, 5)]], 14)
    tokens, _ = model.encode_images(packed)
    assert tokens.shape[1] == 24  # one token per patch
    shuffled, _ = AndesVL(CFG, rngs=nnx.Rngs(0)).encode_images(packed)
    assert shuffled.shape[1] == 6  # one token per 2x2 group


def test_text_only_batch_and_placeholder_merge():
    model = AndesVL(CFG, rngs=nnx.Rngs(0))
    ids = jnp.asarray([[65, 66, 67, 68]])
    logits, _ = model(ids)  # no images at all
    assert logits.shape == (1, 4, CFG.text.vocab_size)
    pad = CFG.tokens.image_pad
    packed = pack_images([[image(28, 56, 6)], [image(56, 28, 7)]], 14, max_patches=12)
    ids = jnp.asarray([[65, pad, pad, 66], [pad, 67, pad, 68]])
    embeds = model.embed(ids, packed)
    tokens, _ = model.encode_images(packed)
    np.testing.assert_allclose(
        embeds[0, 1:3], tokens[0, :2], atol=1e-6
    )  # row 0 takes its own images
    np.testing.assert_allclose(embeds[1, [0, 2]], tokens[1, :2], atol=1e-6)
    np.testing.assert_allclose(embeds[1, 1], model.llm.embed(jnp.asarray(67)), atol=1e-6)


def _prompt_batch():
    pad = CFG.tokens.image_pad
    packed = pack_images([[image(56, 56, 8)], [image(28, 56, 9)]], 14, max_patches=16)
    ids = np.full((2, 11), 70, np.int32)
    ids[0, 2:6] = pad
    ids[1, 1:3] = pad
    return jnp.asarray(ids), packed


@pytest.mark.parametrize("scan", [True, False])
def test_kv_cache_decode_matches_full_recompute(scan):
    model = AndesVL(CFG.replace(scan_layers=scan), rngs=nnx.Rngs(1))
    ids, packed = _prompt_batch()
    full, _ = model(ids, packed)
    cache = model.init_cache(2, 16)
    prefix, cache = model(ids[:, :7], packed, cache=cache)  # prefill
    chunk, cache = model(ids[:, 7:9], cache=cache)  # chunked prefill
    step1, cache = model(ids[:, 9:10], cache=cache)  # single-token decode steps
    step2, cache = model(ids[:, 10:11], cache=cache)
    np.testing.assert_allclose(
        jnp.concatenate([prefix, chunk, step1, step2], axis=1), full, atol=2e-5
    )
    assert cache.lengths.tolist() == [11, 11]
    assert cache.stacked == scan  # the cache's layers are laid out like the model's


@pytest.mark.parametrize("scan", [True, False])
def test_kv_cache_in_the_other_layer_layout_is_a_clear_error(scan):
    model = AndesVL(CFG.replace(scan_layers=scan), rngs=nnx.Rngs(1))
    cache = KVCache.init(CFG.text, 1, 8, stacked=not scan)
    with pytest.raises(ValueError, match="build the cache with init_cache"):
        model(jnp.ones((1, 3), jnp.int32), cache=cache)


def test_cache_respects_per_sequence_lengths():
    """Rows advance by their own number of valid tokens; padding never becomes visible."""
    model = AndesVL(CFG, rngs=nnx.Rngs(2))
    ids = jnp.asarray([[65, 66, 67, 68], [71, 72, 0, 0]])
    seg = jnp.asarray([[1, 1, 1, 1], [1, 1, 0, 0]])
    cache = model.init_cache(2, 8)
    _, cache = model(ids, segment_ids=seg, cache=cache)
    assert cache.lengths.tolist() == [4, 2]
    nxt, cache = model(jnp.asarray([[69], [73]]), cache=cache)
    ref1, _ = model(jnp.asarray([[65, 66, 67, 68, 69]]))
    ref2, _ = model(jnp.asarray([[71, 72, 73]]))
    np.testing.assert_allclose(nxt[0, 0], ref1[0, -1], atol=2e-5)
    np.testing.assert_allclose(nxt[1, 0], ref2[0, -1], atol=2e-5)


def test_packed_text_segments_are_independent():
    model = AndesVL(CFG, rngs=nnx.Rngs(3))
    a, b = [65, 66, 67], [80, 81]
    packed_logits, _ = model(
        jnp.asarray([a + b]),
        segment_ids=jnp.asarray([[1, 1, 1, 2, 2]]),
        positions=jnp.asarray([[0, 1, 2, 0, 1]]),
    )
    np.testing.assert_allclose(packed_logits[0, 3:], model(jnp.asarray([b]))[0][0], atol=2e-5)


def _into_scan_layout(model, loop_state) -> None:
    """Write a per-layer-module state (weights or their gradients) into a scan model's stacked layers."""
    for tower in ("llm", "vision"):
        layers = loop_state[tower]["layers"]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[layers[i] for i in range(len(layers))])
        nnx.update(getattr(model, tower).layers, stacked)
    nnx.update(model.projector, loop_state["projector"])
    for part in ("embed", "final_norm"):
        nnx.update(getattr(model.llm, part), loop_state["llm"][part])
    for part in ("patch_embed", "patch_norm", "post_norm"):
        nnx.update(getattr(model.vision, part), loop_state["vision"][part])
    model.vision.pos_embed.set_value(loop_state["vision"]["pos_embed"].get_value())


def _leaves(state) -> dict[str, np.ndarray]:
    """Every leaf of an nnx.State as a host array, by path."""
    leaves = jax.tree_util.tree_leaves_with_path(state)
    return {jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}


def test_scan_remat_and_loop_compute_the_same_function():
    """Same loss and the same gradient of every parameter, whatever the layer scan and remat."""
    ids, packed = _prompt_batch()
    ref = AndesVL(CFG.replace(scan_layers=False), rngs=nnx.Rngs(4))

    def loss(model):
        logits, _ = model(ids, packed)
        return jnp.mean(logits**2)

    ref_loss, ref_grads = nnx.value_and_grad(loss)(ref)
    # the loop model's gradients in the scan layout (a holder initialised apart, so a leaf the
    # layout change missed cannot match by chance)
    holder = AndesVL(CFG.replace(scan_layers=True), rngs=nnx.Rngs(99))
    _into_scan_layout(holder, ref_grads)
    want = _leaves(nnx.state(holder, nnx.Param))
    for remat in ("none", "full", "dots"):
        model = AndesVL(CFG.replace(scan_layers=True, remat=remat), rngs=nnx.Rngs(4))
        _into_scan_layout(model, nnx.state(ref))
        value, grads = nnx.value_and_grad(loss)(model)
        np.testing.assert_allclose(value, ref_loss, rtol=1e-5)
        got = _leaves(grads)
        assert got.keys() == want.keys()
        for path, g in got.items():
            scale = max(1e-3, float(np.abs(want[path]).max()))
            np.testing.assert_allclose(g, want[path], atol=1e-5 * scale, err_msg=f"{remat} {path}")


def test_bf16_compute_runs_and_stays_close():
    ids, packed = _prompt_batch()
    f32 = AndesVL(CFG, rngs=nnx.Rngs(5))
    bf16 = AndesVL(CFG.replace(dtype="bfloat16"), rngs=nnx.Rngs(5))
    a, _ = f32(ids, packed)
    b, _ = bf16(ids, packed)
    assert b.dtype == jnp.float32  # logits are returned in float32
    assert np.abs(np.asarray(a) - np.asarray(b)).max() < 0.1 * max(1.0, np.abs(np.asarray(a)).max())
