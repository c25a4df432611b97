"""The generation engine: cache decoding equals full recomputation, sampling rules, stop, streaming,
thinking modes, sharding, the decoding layout (same logits, in-place KV cache), and the chat command
on an official fixture checkpoint."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from andesvl_jax.cli import main
from andesvl_jax.config import get_preset
from andesvl_jax.data.patches import pack_images
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.engine import Engine, decoding_layout
from andesvl_jax.infer.generate import _generate, generate
from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams, allowed_logits, sample_next
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.sharding import make_mesh

GREEDY = SamplingParams()


@pytest.fixture(scope="module")
def model():
    return AndesVL(get_preset("tiny"), rngs=nnx.Rngs(3))


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.default()


@pytest.fixture(scope="module")
def samples():
    """Prompts of different lengths with 1, 2 and 0 images."""
    src = SyntheticSource(
        {"count": 1.0, "multi_image": 1.0, "text_arith": 1.0},
        size=64,
        seed=0,
        split="eval",
        ctx=TaskContext(28, 84),
    )
    by_images = {}
    for i in range(64):
        by_images.setdefault(len(src[i].images), src[i])
    return [by_images[1], by_images[2], by_images[0]]


def _engine(model, tok, **kw):
    return Engine(model, tok, image_max_size=84, max_prompt_tokens=512, max_patches=512, **kw)


def test_cached_greedy_decode_equals_full_recomputation(model, tok, samples):
    engine = _engine(model, tok, prefill_chunk=16)  # several prefill chunks per prompt
    examples = [engine.encode(s, None) for s in samples]
    assert len({e.num_tokens for e in examples}) == 3
    assert [len(e.images) for e in examples] == [1, 2, 0]
    out = engine.generate(samples, max_new_tokens=6)
    patch = model.cfg.vision.patch_size
    for e, done in zip(examples, out, strict=True):
        ids = list(e.ids)
        images = pack_images([[im.pixel_values for im in e.images]], patch) if e.images else None
        for token in done.token_ids:
            logits, _ = model(jnp.asarray([ids], jnp.int32), images)
            assert int(jnp.argmax(logits[0, -1])) == token
            ids.append(token)


def test_stop_tokens_end_a_row_and_pad_the_rest(model):
    ids = np.arange(1, 13, dtype=np.int32)[None].repeat(2, 0)
    greedy = SamplingBatch.of([GREEDY, GREEDY])
    free = generate(model, ids, [12, 7], None, greedy, max_new_tokens=6, stop_tokens=(), pad_id=0)
    stop = int(free.tokens[0, 2])
    cut = generate(
        model, ids, [12, 7], None, greedy, max_new_tokens=6, stop_tokens=(stop,), pad_id=0
    )
    first = list(free.tokens[0]).index(stop)
    assert cut.num_tokens[0] == first + 1 and cut.stopped[0]
    np.testing.assert_array_equal(cut.tokens[0, : first + 1], free.tokens[0, : first + 1])
    assert np.all(cut.tokens[0, first + 1 :] == 0)


def test_streaming_sees_every_step_in_order(model):
    ids = np.arange(1, 9, dtype=np.int32)[None]
    seen = []
    g = generate(
        model,
        ids,
        [8],
        None,
        SamplingBatch.of([GREEDY]),
        max_new_tokens=5,
        stop_tokens=(),
        pad_id=0,
        stream=lambda step, tokens, done: seen.append((int(step), int(tokens[0]))),
    )
    assert seen == [(i, int(t)) for i, t in enumerate(g.tokens[0])]


def test_sampling_is_reproducible_per_request_and_independent_of_the_batch(model):
    ids = np.arange(1, 9, dtype=np.int32)[None].repeat(3, 0)
    hot = [SamplingParams(temperature=1.5, seed=s) for s in (7, 7, 8)]
    kw = dict(max_new_tokens=12, stop_tokens=(), pad_id=0)
    batch = generate(model, ids, [8, 8, 8], None, SamplingBatch.of(hot), **kw).tokens
    alone = generate(model, ids[:1], [8], None, SamplingBatch.of(hot[:1]), **kw).tokens
    np.testing.assert_array_equal(batch[0], batch[1])  # same seed, same tokens
    np.testing.assert_array_equal(batch[0], alone[0])  # neighbours do not change a request
    assert not np.array_equal(batch[0], batch[2])  # another seed, another sample


def _numpy_allowed(logits, k, p):
    order = np.argsort(-logits)
    keep = order[:k] if k else order
    probs = np.exp(logits[keep] - logits[keep].max())
    probs /= probs.sum()
    n = int(np.searchsorted(np.cumsum(probs), p) + 1)
    return set(keep[: min(n, len(keep))].tolist())


@pytest.mark.parametrize("k,p", [(5, 1.0), (0, 0.5), (8, 0.3), (1, 0.9)])
def test_top_k_top_p_never_sample_outside_the_allowed_set(k, p):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 64)).astype(np.float32) * 2
    params = SamplingBatch.of([SamplingParams(1.0, k, p, seed=i) for i in range(4)])
    filtered = np.asarray(allowed_logits(jnp.asarray(logits), params.top_k, params.top_p))
    for row in range(4):
        allowed = _numpy_allowed(logits[row], k, p)
        assert set(np.flatnonzero(np.isfinite(filtered[row])).tolist()) == allowed
    draws = jax.jit(lambda s: sample_next(jnp.asarray(logits), params, s, None, False))
    tokens = np.stack([np.asarray(draws(s)) for s in range(200)])
    for row in range(4):
        assert set(tokens[:, row].tolist()) <= _numpy_allowed(logits[row], k, p)


def test_presence_penalty_moves_greedy_off_generated_tokens(model):
    logits = jnp.asarray([[0.0, 3.0, 2.8, 1.0]])
    seen = jnp.asarray([[False, True, False, False]])
    penal = SamplingBatch.of([SamplingParams(presence_penalty=1.0)])
    assert int(sample_next(logits, penal, 0, seen, True)[0]) == 2
    assert int(sample_next(logits, SamplingBatch.of([GREEDY]), 0, seen, True)[0]) == 1
    # end to end: a huge penalty forbids any repeat within a completion
    ids = np.arange(1, 9, dtype=np.int32)[None]
    huge = SamplingBatch.of([SamplingParams(presence_penalty=1e4)])
    out = generate(model, ids, [8], None, huge, max_new_tokens=20, stop_tokens=(), pad_id=0)
    assert len(set(out.tokens[0].tolist())) == 20


def test_thinking_modes_open_the_turn_and_split_the_answer(model, tok, samples):
    engine = _engine(model, tok)
    think = tok.decode(engine.encode(samples[2], True).ids)
    nothink = tok.decode(engine.encode(samples[2], False).ids)
    assert think.endswith("assistant\n<think>")
    assert nothink.endswith("assistant\n<think>\n\n</think>\n\n")
    ids = tok.encode("I count 3.</think>\n\n3").tolist() + [tok.special_tokens.im_end]
    done = engine._completion(np.asarray(ids), True, thinking=True)
    assert (done.reasoning, done.answer, done.finish_reason) == ("I count 3.", "3", "stop")
    plain = engine._completion(np.asarray(ids[:2]), False, thinking=None)
    assert plain.reasoning is None and plain.finish_reason == "length"


def test_sharded_engine_matches_single_device(model, tok, samples):
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    single = _engine(model, tok).generate(samples, max_new_tokens=5)
    sharded = _engine(model, tok, mesh=mesh).generate(samples, max_new_tokens=5)
    assert [c.token_ids for c in sharded] == [c.token_ids for c in single]


def test_decoding_layout_keeps_the_logits_and_leaves_the_model_alone(model):
    fast = decoding_layout(model)
    q = fast.llm.layers[0].attn.q
    assert q.out_in and q.kernel.get_metadata()["logical_axes"] == ("heads", "embed")
    assert not model.llm.layers.attn.q.out_in  # the original keeps its stacked [in, out] kernels
    assert model.llm.layers.attn.q.kernel.get_metadata()["logical_axes"] == (
        "layers",
        "embed",
        "heads",
    )
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (2, 5), (2, 40)]:  # few rows (decode products) and many (prefill)
        ids = jnp.asarray(rng.integers(1, model.cfg.text.vocab_size, shape), jnp.int32)
        np.testing.assert_allclose(fast(ids)[0], model(ids)[0], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("b", [1, 2])
def test_decode_loop_updates_the_kv_cache_in_place(model, b):
    """The compiled prefill + decode never copies a cache buffer (it used to copy every layer's
    cache on every step): no `copy` of any array with the cache's slot dimension."""
    graphdef, state = nnx.split(decoding_layout(model))
    t, new = 16, 8  # slots = 24: no other dimension of the tiny model is 24
    hlo = (
        _generate.lower(
            graphdef,
            state,
            np.ones((b, t), np.int32),
            np.full((b,), t, np.int32),
            None,
            None,
            SamplingBatch.of([GREEDY] * b),
            np.asarray([-1], np.int32),
            np.int32(0),
            max_new=new,
            chunk=t,
            greedy=True,
            penalised=False,
            stream=False,
        )
        .compile()
        .as_text()
    )
    text = model.cfg.text
    assert f"f32[{b * text.num_kv_heads},{t + new},{text.head_dim}]" in hlo  # per-layer buffers
    has_slots = re.compile(rf"f32\[([\d,]*,)?{t + new}(,[\d,]*)?\]")
    copies = [line for line in hlo.splitlines() if " copy(" in line and has_slots.search(line)]
    assert not copies, copies[:3]


def test_chat_command_on_an_official_fixture(fixtures_dir, tmp_path, capsys):
    image = tmp_path / "red.png"
    Image.new("RGB", (56, 42), (220, 30, 30)).save(image)
    ckpt = fixtures_dir / "andesvl_aimv2_tiny"
    argv = ["chat", "--checkpoint", str(ckpt), "--image", str(image), "--max-new-tokens", "4"]
    assert main([*argv, "What colour is it?"]) == 0
    assert "stopped after --max-new-tokens=4" in capsys.readouterr().err
