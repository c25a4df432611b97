"""Grain pipeline: exact resume (single, multiprocess, text fill), sharding, on_error policies."""

import dataclasses
import json
from collections import Counter

import jax
import numpy as np
import pytest

from andesvl_jax.data.errors import DataError
from andesvl_jax.data.pipeline import (
    DataConfig,
    example_dataset,
    make_dataset,
    pipeline_stats,
    synthetic_dataset,
)
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.synthetic import SyntheticSource
from andesvl_jax.data.tokenizer import TextTokenizer


def _eq(a, b):
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


CFG = DataConfig(stage="demo", batch_size=2, seed=7)


def test_resume_gives_the_same_next_batches():
    ds = synthetic_dataset(CFG, size=200)
    it = iter(ds)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(3)]
    it2 = iter(synthetic_dataset(CFG, size=200))
    it2.set_state(state)
    for e in expected:
        assert _eq(e, next(it2))


def _segments(batches) -> Counter:
    """Multiset of the packed samples' token sequences (packing reorders samples within a batch)."""
    out = Counter()
    for b in batches:
        for ids, seg in zip(b.input_ids, b.segment_ids, strict=True):
            out.update(tuple(ids[seg == s]) for s in np.unique(seg[seg > 0]))
    return out


def _epoch_orders(seed: int, n: int, epochs: int) -> list[list[str]]:
    """The sample order of each epoch of the shuffled stream over one fixed source of n samples."""
    source = SyntheticSource("demo", size=n, seed=5)  # the same source and data for every seed
    ex = example_dataset(source, dataclasses.replace(CFG, seed=seed), TextTokenizer.default())
    return [[ex[e * n + i].origin for i in range(n)] for e in range(epochs)]


def test_shuffle_seed_alone_changes_the_order_of_the_same_data():
    source = SyntheticSource("demo", size=24, seed=5)
    runs = [
        list(make_dataset(source, dataclasses.replace(CFG, seed=s, num_epochs=1))) for s in (7, 8)
    ]
    assert not _eq(runs[0][0], runs[1][0])  # another order from the first batch on
    assert _segments(runs[0]) == _segments(runs[1])  # and the very same samples
    assert sum(_segments(runs[0]).values()) == 24


def test_epochs_reshuffle_the_same_samples():
    orders = _epoch_orders(7, 16, 3)
    assert all(sorted(o) == sorted(orders[0]) for o in orders)  # each epoch: every sample once
    assert len({tuple(o) for o in orders}) == 3  # in a new order each epoch


def test_adjacent_seeds_share_no_epoch_order():
    """grain shuffles epoch e with seed + e, so seed 8's first epoch was seed 7's second."""
    orders = [tuple(o) for s in (7, 8) for o in _epoch_orders(s, 16, 3)]
    assert len(set(orders)) == len(orders)


def test_finite_epoch_sees_every_sample_once():
    ds = synthetic_dataset(
        DataConfig(stage="demo", batch_size=2, num_epochs=1, shuffle=False), size=30
    )
    it = iter(ds)
    n_batches = sum(1 for _ in it)
    stats = pipeline_stats(it.get_state())
    assert stats["ok"] == 30 and stats["batches"] == n_batches


def test_process_sharding_is_disjoint():
    cfg = DataConfig(stage="demo", batch_size=1, num_epochs=1, shuffle=False)
    texts = []
    for pi in range(2):
        it = iter(synthetic_dataset(cfg, size=10, process_index=pi, process_count=2))
        texts.append({tuple(b.input_ids[0][b.segment_ids[0] > 0]) for b in it})
    assert texts[0] and texts[1] and not texts[0] & texts[1]


class BadSource:
    """Every third sample has an image-tag mismatch."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        tags = "<image>" * (2 if i % 3 == 0 else 1)
        return Sample(
            [Message("user", tags + "q"), Message("assistant", "a")],
            [np.zeros((56, 56, 3), np.uint8)],
            origin=f"bad.jsonl:{i + 1}",
        )


def test_on_error_raise_names_the_sample():
    with pytest.raises(DataError, match=r"bad.jsonl:\d+: image_tag_mismatch"):
        list(
            make_dataset(
                BadSource(), DataConfig(stage="demo", batch_size=2, num_epochs=1, shuffle=False)
            )
        )


def test_on_error_skip_counts():
    it = iter(
        make_dataset(
            BadSource(), DataConfig(stage="demo", batch_size=2, num_epochs=1, on_error="skip")
        )
    )
    list(it)
    stats = pipeline_stats(it.get_state())
    assert stats["ok"] == 8 and stats["skipped/image_tag_mismatch"] == 4


def test_multiprocess_prefetch_resumes_exactly():
    cfg = DataConfig(stage="demo", batch_size=2, seed=1, worker_count=2)
    ds = synthetic_dataset(cfg, size=100)
    it = iter(ds)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    it.close()
    it2 = iter(synthetic_dataset(cfg, size=100))
    it2.set_state(state)
    got = [next(it2) for _ in range(2)]
    it2.close()
    assert all(_eq(e, g) for e, g in zip(expected, got, strict=True))
    assert pipeline_stats(state)["ok"] > 0


def test_text_fill_resume_with_held_text_only_examples():
    """Joint stage (text fill on): the state carries held text-only examples and resumes exactly."""
    cfg = DataConfig(
        stage="joint", batch_size=2, max_tokens=2048, max_patches=256, image_max_size=112, seed=3
    )
    assert cfg.resolved("text_fill")
    it = iter(synthetic_dataset(cfg, size=300))
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    source = SyntheticSource("joint", size=300, seed=3)
    examples = example_dataset(source, cfg, TextTokenizer.default())
    assert any(examples[i].num_patches == 0 for i in state["pending"])
    expected = [next(it) for _ in range(3)]
    it2 = iter(synthetic_dataset(cfg, size=300))
    it2.set_state(state)
    for e in expected:
        assert _eq(e, next(it2))
    stats = pipeline_stats(it.get_state())
    assert stats["token_fill"] > 0.7 and stats["patch_fill"] > 0.9
