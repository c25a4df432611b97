"""EAGLE-2 speculative decoding is lossless: greedy output equals plain greedy decoding token for
token (untrained and near-perfect drafts, mixed prompt lengths, 0/1/2 images, stop tokens, long
generations over many tree steps); the tree attention mask equals per-path recomputation; the KV
after acceptance equals decoding the accepted tokens one by one; sampled output follows the
target's distribution (chi-square); bad requests fail before compiling; heads save and load."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from andesvl_jax.config import get_preset
from andesvl_jax.convert.safetensors_io import CheckpointError
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.engine import Engine, decoding_layout
from andesvl_jax.infer.generate import generate
from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams, allowed_logits
from andesvl_jax.infer.speculative.commit import commit_path
from andesvl_jax.infer.speculative.decode import _speculate, speculative_generate
from andesvl_jax.infer.speculative.draft_io import load_draft, save_draft
from andesvl_jax.infer.speculative.params import TreeParams
from andesvl_jax.infer.speculative.tree import ancestor_mask
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.models.eagle import new_draft_head
from andesvl_jax.models.kv_cache import TreeMask

GREEDY = SamplingParams()
SMALL_TREE = TreeParams(top_k=4, depth=3, total_tokens=10)


@pytest.fixture(scope="module")
def model():
    return AndesVL(get_preset("tiny"), rngs=nnx.Rngs(3))


@pytest.fixture(scope="module")
def decoder(model):
    return decoding_layout(model)


@pytest.fixture(scope="module")
def near_target(model):
    """A target whose next token depends mostly on the current one (attention and MLP outputs
    scaled by 0.3) with a draft that predicts exactly that part: partial acceptance, long paths."""
    target = decoding_layout(model)
    for layer in target.llm.layers:
        for lin in (layer.attn.o, layer.mlp.down):
            lin.kernel[...] = lin.kernel[...] * 0.3
    draft = new_draft_head(target.cfg.text, seed=1)
    d = target.cfg.text.hidden_size
    draft.fc.kernel[...] = jnp.concatenate([jnp.eye(d), jnp.zeros((d, d))], 0)
    draft.layer.attn.o.kernel[...] = jnp.zeros_like(draft.layer.attn.o.kernel[...])
    draft.layer.mlp.down.kernel[...] = jnp.zeros_like(draft.layer.mlp.down.kernel[...])
    return target, draft


def _prompts():
    rng = np.random.default_rng(0)
    return rng.integers(1, 400, (3, 20)).astype(np.int32), np.array([20, 7, 13], np.int32)


def test_untrained_draft_with_images_equals_plain_greedy(model):
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
    samples = [by_images[1], by_images[2], by_images[0]]
    engine = Engine(
        model,
        TextTokenizer.default(),
        image_max_size=84,
        max_prompt_tokens=512,
        max_patches=512,
        prefill_chunk=16,
    )
    draft = new_draft_head(model.cfg.text, seed=7)  # random: almost nothing is accepted
    plain = engine.generate(samples, max_new_tokens=20)
    chain = TreeParams.chain(3)  # the tree is exercised by the test below
    spec = engine.generate(samples, max_new_tokens=20, speculative=draft, tree=chain)
    assert [len(engine.encode(s, None).images) for s in samples] == [1, 2, 0]
    assert [c.token_ids for c in spec] == [c.token_ids for c in plain]
    assert [c.finish_reason for c in spec] == [c.finish_reason for c in plain]
    assert engine.spec_stats[0].steps.min() >= 1


def test_long_generation_with_accepted_paths_equals_plain_greedy(near_target):
    target, draft = near_target
    tree = SMALL_TREE
    ids, lengths = _prompts()
    greedy = SamplingBatch.of([GREEDY] * 3)
    kw = dict(max_new_tokens=64, pad_id=0)
    plain = generate(target, ids, lengths, None, greedy, stop_tokens=(), **kw)
    spec, stats = speculative_generate(
        target, draft, ids, lengths, None, greedy, stop_tokens=(), params=tree, **kw
    )
    np.testing.assert_array_equal(spec.tokens, plain.tokens)
    assert stats.steps.max() >= 20  # many tree steps
    assert stats.tau > 1.3  # and paths longer than the bonus token were accepted
    # A stop token in the middle of row 0's output ends that row at the same place.
    stop = int(plain.tokens[0, 37])
    plain = generate(target, ids, lengths, None, greedy, stop_tokens=(stop,), **kw)
    spec, _ = speculative_generate(
        target, draft, ids, lengths, None, greedy, stop_tokens=(stop,), params=tree, **kw
    )
    np.testing.assert_array_equal(spec.tokens, plain.tokens)
    np.testing.assert_array_equal(spec.num_tokens, plain.num_tokens)
    np.testing.assert_array_equal(spec.stopped, plain.stopped)


# A tree of 7 nodes (0 = root): 0 -> 1, 2; 1 -> 3, 4; 3 -> 5; 2 -> 6.
PARENT = np.array([[0, 0, 0, 1, 1, 3, 2]], np.int32)
DEPTH = np.array([[0, 1, 1, 2, 2, 3, 2]], np.int32)


def _prefilled(decoder, prefix, capacity=64):
    cache = decoder.init_cache(1, capacity)
    _, cache = decoder(jnp.asarray(prefix[None]), cache=cache)
    return cache


def _tree_forward(decoder, prefix, tokens):
    cache = _prefilled(decoder, prefix)
    n = cache.lengths
    tree = TreeMask(n, ancestor_mask(jnp.asarray(PARENT), 3))
    hidden, cache = decoder.llm(
        decoder.llm.embed(jnp.asarray(tokens[None])),
        n[:, None] + jnp.asarray(DEPTH),
        jnp.ones((1, tokens.shape[0]), jnp.int32),
        cache,
        tree=tree,
    )
    return hidden[0], cache


def test_tree_mask_equals_per_path_recomputation(decoder):
    prefix = np.arange(3, 14, dtype=np.int32)
    tokens = np.array([40, 41, 42, 43, 44, 45, 46], np.int32)
    hidden, _ = _tree_forward(decoder, prefix, tokens)
    rows, ends = np.zeros((7, len(prefix) + 4), np.int32), []
    for node in range(7):  # each node's own sequence: prefix + the path to it, right-padded
        path, j = [], node
        while True:
            path.insert(0, int(tokens[j]))
            if j == 0:
                break
            j = int(PARENT[0, j])
        seq = np.concatenate([prefix, path])
        rows[node, : len(seq)] = seq
        ends.append(len(seq) - 1)
    reference, _ = decoder(jnp.asarray(rows), return_hidden=True)  # causal: padding after is unseen
    np.testing.assert_allclose(hidden, reference[np.arange(7), ends], atol=2e-5, rtol=2e-5)


def test_kv_after_acceptance_equals_one_by_one_decoding(decoder):
    prefix = np.arange(3, 14, dtype=np.int32)
    tokens = np.array([40, 41, 42, 43, 44, 45, 46], np.int32)
    _, cache = _tree_forward(decoder, prefix, tokens)
    n = len(prefix)
    path = np.array([[0, 1, 3, 5]], np.int32)  # root -> 1 -> 3 -> 5 accepted
    cache = commit_path(cache, jnp.asarray([n]), jnp.asarray(path), 7, jnp.asarray([n + 4]))
    ref = _prefilled(decoder, prefix)
    for j in path[0]:
        _, ref = decoder(jnp.asarray([[tokens[j]]]), cache=ref)
    assert int(cache.lengths[0]) == int(ref.lengths[0]) == n + 4
    for mine, theirs in zip(cache.k + cache.v, ref.k + ref.v, strict=True):
        np.testing.assert_allclose(mine[:, : n + 4], theirs[:, : n + 4], atol=1e-6, rtol=1e-6)
    # and the next decode step reads the same cache
    a, _ = decoder(jnp.asarray([[7]]), cache=cache)
    b, _ = decoder(jnp.asarray([[7]]), cache=ref)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_speculative_loop_updates_the_caches_in_place(decoder):
    """No `copy` of any array with the caches' slot dimension in the compiled loop: the tree's
    KV, the path commit and the draft's cache are all updated in place."""
    tree = TreeParams(2, 2, 3)
    t, new = 16, 8
    slots = t + new + tree.verified + tree.candidates + 2 * tree.depth + 2  # = 40 (capacity)
    gd, st = nnx.split(decoder)
    dd, ds = nnx.split(new_draft_head(decoder.cfg.text))
    hlo = (
        _speculate.lower(
            gd,
            st,
            dd,
            ds,
            np.ones((1, t), np.int32),
            np.full((1,), t, np.int32),
            None,
            None,
            SamplingBatch.of([GREEDY]),
            np.asarray([-1], np.int32),
            np.int32(0),
            params=tree,
            max_new=new,
            chunk=t,
            greedy=True,
            stream=False,
        )  # fmt: skip
        .compile()
        .as_text()
    )
    text = decoder.cfg.text
    assert f"f32[{text.num_kv_heads},{slots},{text.head_dim}]" in hlo
    has_slots = re.compile(rf"f32\[([\d,]*,)?{slots}(,[\d,]*)?\]")
    copies = [line for line in hlo.splitlines() if " copy(" in line and has_slots.search(line)]
    assert not copies, copies[:3]


def _chi_square_p(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square p-value of counts against probs (cells with expected < 5 pooled)."""
    expected = probs * counts.sum()
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    stat = float(np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep]))
    dof = int(keep.sum()) - 1
    return float(jax.scipy.special.gammaincc(dof / 2, stat / 2))


def test_speculative_sampling_follows_the_target_distribution():
    """16-token vocabulary, temperature 0.8, top-k 12, an untrained draft tree (top_k 3, depth 2,
    6 nodes: children tried in order, rejections, residual resampling). 3000 runs of 3 tokens (the
    2nd and 3rd come from tree verification); the empirical marginals of tokens 2 and 3 against
    the exact ones from full forwards: Pearson chi-square, significance 0.001, fixed seed. The
    same counts against the untempered distribution must be rejected (the test has power)."""
    cfg = get_preset("tiny")
    cfg = cfg.replace(text=dataclasses.replace(cfg.text, vocab_size=16), scan_layers=False)
    target = AndesVL(cfg, rngs=nnx.Rngs(5))
    target.llm.embed.embedding[...] = target.llm.embed.embedding[...] * 10
    target = decoding_layout(target)
    draft = new_draft_head(cfg.text, seed=2)
    prompt = np.array([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3]], np.int32)
    params = SamplingParams(temperature=0.8, top_k=12)
    batch = SamplingBatch.of([params])
    gd, st = nnx.split(target)
    dd, ds = nnx.split(draft)

    def run(key):
        out = _speculate(
            gd, st, dd, ds, prompt, np.array([16], np.int32), None, None,
            batch._replace(keys=key[None]), np.array([-1], np.int32), np.int32(0),
            params=TreeParams(3, 2, 6), max_new=3, chunk=16, greedy=False, stream=False,
        )  # fmt: skip
        return out[0][0]

    n = 3000
    keys = jax.random.split(jax.random.PRNGKey(123), n)
    tokens = np.asarray(jax.jit(jax.vmap(run))(keys))

    def dist(logits, temperature=0.8, top_k=12):
        k = jnp.full((logits.shape[0],), top_k, jnp.int32)
        return np.asarray(
            jax.nn.softmax(allowed_logits(logits / temperature, k, jnp.ones_like(k, jnp.float32)))
        )

    # Next-token logits after the prompt + every (t1) and every (t1, t2): one padded forward.
    ext = np.concatenate([prompt.repeat(16, 0), np.arange(16)[:, None]], 1)
    ext2 = np.concatenate([ext.repeat(16, 0), np.tile(np.arange(16), 16)[:, None]], 1)
    rows = np.concatenate([np.pad(prompt, ((0, 0), (0, 2))), np.pad(ext, ((0, 0), (0, 1))), ext2])
    logits = np.asarray(jax.jit(lambda x: target(x)[0])(jnp.asarray(rows)))
    last = np.concatenate([logits[:1, 15], logits[1:17, 16], logits[17:, 17]])

    def step_probs(temperature):
        first = dist(last[:1], temperature)[0]  # [16]
        second = dist(last[1:17], temperature)  # [t1, t2]
        third = dist(last[17:], temperature).reshape(16, 16, 16)
        p2 = first @ second
        p3 = np.einsum("a,ab,abc->c", first, second, third)
        return p2, p3

    p2, p3 = step_probs(0.8)
    c2, c3 = (np.bincount(tokens[:, i], minlength=16) for i in (1, 2))
    assert _chi_square_p(c2, p2) > 1e-3
    assert _chi_square_p(c3, p3) > 1e-3
    q2, _ = step_probs(1.0)
    assert _chi_square_p(c2, q2) < 1e-3


def test_bad_requests_fail_before_compiling(decoder, model):
    ids, lengths = _prompts()
    greedy = SamplingBatch.of([GREEDY] * 3)
    draft = new_draft_head(decoder.cfg.text)
    kw = dict(max_new_tokens=4, stop_tokens=(), pad_id=0)
    for tree, msg in [
        (TreeParams(depth=0), "depth must be >= 1"),
        (TreeParams(top_k=2, depth=5, total_tokens=3), "total_tokens 3 < depth 5"),
        (TreeParams(top_k=2, depth=2, total_tokens=7), "proposes"),
    ]:
        with pytest.raises(ValueError, match=msg):
            speculative_generate(decoder, draft, ids, lengths, None, greedy, params=tree, **kw)
    for field, value in [("hidden_size", 32), ("vocab_size", 256)]:
        other = new_draft_head(dataclasses.replace(decoder.cfg.text, **{field: value}))
        with pytest.raises(ValueError, match=f"draft head {field}"):
            speculative_generate(decoder, other, ids, lengths, None, greedy, **kw)
    penalised = SamplingBatch.of([SamplingParams(temperature=1.0, presence_penalty=1.0)] * 3)
    with pytest.raises(ValueError, match="presence_penalty"):
        speculative_generate(decoder, draft, ids, lengths, None, penalised, **kw)
    with pytest.raises(ValueError, match="scan_layers=False"):
        speculative_generate(model, draft, ids, lengths, None, greedy, **kw)
    engine = Engine(decoder, TextTokenizer.default())
    with pytest.raises(ValueError, match="KV eviction"):
        engine.generate([], speculative=draft, kv_policy="snapkv", kv_budget=0.5)


def test_draft_heads_save_and_load(tmp_path, decoder):
    draft = new_draft_head(decoder.cfg.text, seed=4, draft_vocab=100)
    draft.d2t[...] = jnp.arange(100, dtype=jnp.int32) * 3
    save_draft(draft, tmp_path / "head")
    loaded = load_draft(tmp_path / "head")
    assert loaded.cfg == draft.cfg
    for (p, a), (q, b) in zip(
        nnx.to_flat_state(nnx.state(draft)), nnx.to_flat_state(nnx.state(loaded)), strict=True
    ):
        assert p == q
        np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "draft.safetensors").write_bytes(b"nonsense")
    with pytest.raises(CheckpointError, match="draft"):
        load_draft(tmp_path / "bad")
