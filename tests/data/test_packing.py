"""Packed TrainBatch layout (segments, positions, targets, loss mask, image pairing rule) and the
streaming packer's text fill (text-only examples top up the tokens once the patches are full)."""

import json

import grain
import jax
import numpy as np

from andesvl_jax.data.batch import packing_efficiency
from andesvl_jax.data.encode import EncodeSpec, Example, SampleEncoder
from andesvl_jax.data.pack_dataset import PackedBatchDataset, PackSpec
from andesvl_jax.data.packing import pack_examples
from andesvl_jax.data.preprocess import ProcessedImage
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
        imgs = [
            rng.integers(
                0, 255, (int(rng.integers(30, 120)), int(rng.integers(30, 120)), 3), np.uint8
            )
            for _ in range(k)
        ]
        out.append(
            enc(
                Sample(
                    [Message("user", "<image>" * k + f"q{i}"), Message("assistant", f"a{i}")], imgs
                )
            )
        )
    return out


def test_layout_and_pairing_rule():
    exs = _examples(12)
    batches = pack_examples(
        exs, batch_size=2, max_tokens=512, max_patches=512, tokens=ST, patch_size=14
    )
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
            # Pairing rule: one image token per 4 patches of vision row r, images in placeholder
            # order.
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
        assert (
            m.sum() == h * w
            and (b.images.grid_h[0][m] == h).all()
            and (b.images.grid_w[0][m] == w).all()
        )
    eff = packing_efficiency(b)
    assert 0 < eff["token_fill"] <= 1 and 0 < eff["patch_fill"] <= 1


# ------------------------------------------------------------------ streaming packer, text fill


def _crafted(spec):
    """(tokens, patches) per example; example i's ids are all i + 1 so batches show who is where."""
    out = []
    for i, (t, p) in enumerate(spec):
        imgs = [ProcessedImage(np.zeros((3, 28, 7 * p), np.float32), (2, p // 2))] if p else []
        out.append(Example(np.full(t, i + 1, np.int32), np.ones(t, bool), imgs, f"ex{i}"))
    return out


# One row of 100 tokens / 16 patches. Text-only examples come first in the stream, the images later.
STREAM = [(50, 0), (40, 0), (20, 16), (30, 0), (10, 0), (45, 0), (20, 16), (20, 16), (5, 0)]


def _rows(batch):
    """Per row, the example numbers in segment order."""
    return [
        [int(ids[seg == s][0]) - 1 for s in range(1, seg.max() + 1)]
        for ids, seg in zip(batch.input_ids, batch.segment_ids, strict=True)
    ]


def _packed(text_fill, num_epochs=1):
    spec = PackSpec(1, 100, 16, 14, ST, max_misses=4, text_fill=text_fill)
    return PackedBatchDataset(grain.MapDataset.source(_crafted(STREAM)), spec, num_epochs)


def test_text_fill_tops_up_tokens_after_patches():
    first = next(iter(_packed(text_fill=False)))
    assert _rows(first) == [
        [0, 1, 4]
    ]  # first fit: the texts take the tokens, the image no longer fits
    assert packing_efficiency(first)["patch_fill"] == 0
    it = iter(_packed(text_fill=True))
    b1, b2 = next(it), next(it)
    # The texts wait while the image fills the patches; then the largest held text that fits (50),
    # then reading on (30) fill the tokens. The held 40 waits for the next batch.
    assert _rows(b1) == [[2, 0, 3]]
    assert packing_efficiency(b1) == {"token_fill": 1.0, "patch_fill": 1.0}
    # Image 6, then best fit from the held 40/10/45 (45, then 10), then reading on: image 7 does
    # not fit (it waits), text 8 does.
    assert _rows(b2) == [[6, 5, 4, 8]]


def test_text_fill_epoch_places_every_example_once_and_resumes():
    seen = [i for b in _packed(text_fill=True) for row in _rows(b) for i in row]
    assert sorted(seen) == list(range(len(STREAM)))
    it = iter(_packed(text_fill=True, num_epochs=None))
    next(it)
    state = json.loads(json.dumps(it.get_state()))
    assert state["pending"] == [1]  # the held text-only example travels in the state
    expected = [next(it) for _ in range(4)]
    it2 = iter(_packed(text_fill=True, num_epochs=None))
    it2.set_state(state)
    for e in expected:
        g = next(it2)
        assert all(
            np.array_equal(x, y)
            for x, y in zip(jax.tree.leaves(e), jax.tree.leaves(g), strict=True)
        )
