"""Eviction's memory: the chunked prefill's cache buffers are budget + chunk slots whatever the
prompt length (read from the compiled program), the report's bytes, and vision-token protection."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.data.patches import pack_images
from andesvl_jax.infer.engine import decoding_layout
from andesvl_jax.infer.generate import _generate, _kv_arguments, generate
from andesvl_jax.infer.kv import get_policy, plan
from andesvl_jax.infer.kv.prefill import compact_prefill
from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams
from andesvl_jax.models.andesvl import AndesVL


@pytest.fixture(scope="module")
def model():
    return decoding_layout(AndesVL(get_preset("tiny"), rngs=nnx.Rngs(3)))


def _compiled_generation(model, t, chunk, max_new, policy=None, budget=None):
    """(optimised HLO text, kv arguments) of greedy generation for one prompt of t tokens."""
    ids = np.ones((1, t), np.int32)
    lengths = np.array([t], np.int32)
    kv = _kv_arguments(
        model, policy, budget, ids, lengths, None, None, t=t, chunk=chunk, max_new=max_new
    )
    graphdef, state = nnx.split(model)
    lowered = _generate.lower(
        graphdef,
        state,
        ids,
        lengths,
        None,
        None,
        SamplingBatch.of([SamplingParams()]),
        np.array([-1], np.int32),
        np.int32(0),
        max_new=max_new,
        chunk=chunk,
        greedy=True,
        penalised=False,
        stream=False,
        **(kv[0] if kv else {}),
    )
    return lowered.compile().as_text(), kv


def _cache_slots(model, t, chunk, max_new, policy=None, budget=None):
    """Slots of every [b * kv, slots, head_dim] buffer in the compiled generation program."""
    text, kv = _compiled_generation(model, t, chunk, max_new, policy, budget)
    cfg = model.cfg.text
    shape = re.compile(rf"f32\[{cfg.num_kv_heads},(\d+),{cfg.head_dim}\]")
    return {int(s) for s in shape.findall(text)}, kv


def test_chunked_prefill_cache_is_bounded_by_budget_plus_chunk(model):
    chunk, max_new, budget = 32, 8, 64
    pol = get_policy("snapkv", window=16)
    slots = {}
    for t in (256, 1024):
        slots[t], kv = _cache_slots(model, t, chunk, max_new, pol, budget)
        setup = kv[1].setup
        assert setup.prefill == (budget + chunk,) * 2 and setup.decode == (budget + max_new,) * 2
        g = model.cfg.text.num_heads // model.cfg.text.num_kv_heads
        assert max(slots[t]) <= max(budget + chunk, g * chunk), sorted(slots[t])
    assert slots[256] == slots[1024]  # nothing in the program grows with the prompt
    full, _ = _cache_slots(model, 1024, chunk, max_new)
    assert 1024 + max_new in full  # the full cache holds the prompt: the check would see it


def test_report_counts_kept_removed_and_bytes(model):
    ids = np.random.default_rng(0).integers(1, 400, (2, 128)).astype(np.int32)
    greedy = SamplingBatch.of([SamplingParams()] * 2)
    out = generate(
        model,
        ids,
        [128, 100],
        None,
        greedy,
        max_new_tokens=4,
        stop_tokens=(),
        pad_id=0,
        prefill_chunk=32,
        kv_policy=get_policy("streaming", sinks=4),
        kv_budget=0.25,
    )
    rep = out.kv
    np.testing.assert_array_equal(rep.kept_tokens, [32, 25])
    assert abs(rep.removed_fraction - (1 - 57 / 228)) < 1e-9
    cfg = model.cfg.text
    per_slot = 2 * cfg.num_kv_heads * (2 * cfg.head_dim * 4 + 4)
    assert rep.cache_bytes == per_slot * 2 * (32 + 4)  # 2 layers, cap 32 (16-rounded) + max_new
    assert rep.full_cache_bytes == 2 * cfg.num_kv_heads * 2 * cfg.head_dim * 4 * 2 * (128 + 4)
    assert "kept 25.0 % / removed 75.0 %" in str(rep)


def test_vision_tokens_can_be_protected(model):
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 1, (3, 56, 56)).astype(np.float32)
    images = pack_images([[image]], model.cfg.vision.patch_size)
    n_vision = int(np.sum(images.segment_ids > 0)) // 4  # pixel shuffle: 4 patches per token
    ids = rng.integers(1, 400, (1, 64)).astype(np.int32)
    ids[0, 10 : 10 + n_vision] = model.cfg.tokens.image_pad
    vision = ids == model.cfg.tokens.image_pad
    graphdef, state = nnx.split(model)
    run = jax.jit(compact_prefill, static_argnames=("graphdef", "setup", "chunk"))
    kept_vision = {}
    for protect in (True, False):
        pol = get_policy("snapkv", window=8, protect_vision=protect)
        p = plan(
            pol, 24, [64], padded=64, chunk=16, max_new=2, num_layers=2, vision_counts=[n_vision]
        )
        _, cache, _ = run(
            graphdef,
            state,
            ids,
            jnp.asarray([64]),
            images,
            None,
            vision,
            p.targets,
            setup=p.setup,
            chunk=16,
        )
        held = [np.asarray(layer.pos) for layer in cache.layers]
        kept_vision[protect] = [
            np.isin(np.arange(10, 10 + n_vision), h[n]).all()
            for h in held
            for n in range(h.shape[0])
        ]
    assert all(kept_vision[True]) and not all(kept_vision[False])


def test_compact_decode_updates_k_and_v_in_place(model):
    """The decode loop on the compact cache copies no K/V buffer (as the full cache's,
    test_engine.py::test_decode_loop_updates_the_kv_cache_in_place)."""
    hlo, kv = _compiled_generation(model, 64, 16, 8, get_policy("snapkv", window=8), 21)
    cfg = model.cfg.text
    buffer = f"f32[{cfg.num_kv_heads},{kv[1].setup.decode[0]},{cfg.head_dim}]"
    assert buffer in hlo
    copies = [line for line in hlo.splitlines() if " copy(" in line and buffer in line]
    assert not copies, copies[:3]
