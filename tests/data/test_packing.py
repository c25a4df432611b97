"""Packed TrainBatch layout: segments, positions, targets, loss mask, and the image pairing rule."""

import numpy as np

from andesvl_jax.data.batch import packing_efficiency
from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.packing import pack_examples
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer

TOK = TextTokenizer.default()
ST = TOK.special_tokens


def _examples(n, seed=0):
    rng = np.random.default_rng(seed)
    enc = SampleEncoder(TOK, EncodeSpec(max_tokens=512, max_patches=512))
    out = []
    for i in range(n):
        k = int(rng.integers(0, 3))
        imgs = [rng.integers(0, 255, (int(rng.integers(30, 120)), int(rng.integers(30, 120)), 3), np.uint8)
                for _ in range(k)]
        out.append(enc(Sample([Message("user", "<image>" * k + f"q{i}"), Message("assistant", f"a{i}")], imgs)))
    return out


def test_layout_and_pairing_rule():
    exs = _examples(12)
    batches = pack_examples(exs, batch_size=2, max_tokens=512, max_patches=512, tokens=ST, patch_size=14)
    seen = 0
    for b in batches:
        for r in range(b.input_ids.shape[0]):
            segs = [s for s in np.unique(b.segment_ids[r]) if s > 0]
            assert segs == list(range(1, len(segs) + 1))
            for s in segs:
                ex = exs[seen]
                seen += 1
                m = b.segment_ids[r] == s
                np.testing.assert_array_equal(b.input_ids[r][m], ex.ids)
                np.testing.assert_array_equal(b.positions[r][m], np.arange(ex.num_tokens))
                np.testing.assert_array_equal(b.targets[r][m][:-1], ex.ids[1:])
                np.testing.assert_array_equal(b.loss_mask[r][m], np.append(ex.trainable[1:], 0))
            # Pairing rule: one image token per 4 patches of vision row r, images in placeholder order.
            vis = b.images
            assert (b.input_ids[r] == ST.image_pad).sum() * 4 == (vis.segment_ids[r] > 0).sum()
            pad = b.segment_ids[r] == 0
            assert (b.input_ids[r][pad] == ST.pad).all() and (b.loss_mask[r][pad] == 0).all()
    assert seen == len(exs)


def test_images_follow_placeholder_order():
    exs = _examples(6, seed=3)
    b = pack_examples(exs, 1, 2048, 2048, ST, 14)[0]
    grids = [im.grid for ex in exs for im in ex.images]
    segs = b.images.segment_ids[0]
    assert segs.max() == len(grids)
    for j, (h, w) in enumerate(grids, start=1):
        m = segs == j
        assert m.sum() == h * w and (b.images.grid_h[0][m] == h).all() and (b.images.grid_w[0][m] == w).all()
    eff = packing_efficiency(b)
    assert 0 < eff["token_fill"] <= 1 and 0 < eff["patch_fill"] <= 1
