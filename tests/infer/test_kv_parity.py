"""Peer check against NVIDIA kvpress: our SnapKV and StreamingLLM keep the same positions per
layer and KV head as kvpress's `SnapKVPress` / `StreamingLLMPress` on a tiny HF Qwen3 with the
same weights.

kvpress 0.5.5 (PyPI) requires transformers<5.3 and would downgrade the pinned environment
(transformers 5.25 -> 5.2, tokenizers, huggingface_hub), so it is not a test dependency. The
reference here is a line-by-line numpy port of its scoring, from NVIDIA/kvpress at commit
8bb29b9c3078452a86d692f29123fa6c793e2b05: `kvpress/presses/snapkv_press.py`
(`compute_window_attention`, `score`), `streaming_llm_press.py` (`score`), `scorer_press.py`
(`compress`: n_kept = int(k_len * (1 - compression_ratio)), top-k), `utils.py`
(`get_prerope_query_states`: q_proj then Qwen3's q_norm). Where kvpress's own source is importable
(`import kvpress`, or a source checkout named by KVPRESS_SRC, imported without its package
__init__), `test_port_equals_kvpress_itself` also checks the port against it.

Conventions aligned for the match (docs/kv_eviction.md): budget = 1 - compression_ratio kept;
schedule "end" for SnapKV (kvpress scores once after the whole prompt; our default "chunk"
compacts per chunk); sinks 4 / window 0 for StreamingLLM.
"""

import dataclasses
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from andesvl_jax.config import TextConfig  # noqa: E402
from andesvl_jax.convert.loader import load_checkpoint  # noqa: E402
from andesvl_jax.convert.torch_reference import randomise  # noqa: E402
from andesvl_jax.infer.chunks import bucket  # noqa: E402
from andesvl_jax.infer.kv import get_policy, plan  # noqa: E402
from andesvl_jax.infer.kv.prefill import compact_prefill  # noqa: E402

LAYERS, KV, G, HD = 3, 2, 2, 16
LENGTH, WINDOW, RATIO = 40, 8, 0.5  # kvpress compression_ratio = fraction removed


@dataclasses.dataclass(frozen=True)
class _Cfg:
    text: TextConfig


class TextOnly(nnx.Module):
    """A bare Qwen3 in the shape the engine's prefill expects (embed, cfg.text, llm)."""

    def __init__(self, llm):
        self.llm, self.cfg = llm, _Cfg(llm.cfg)

    def embed(self, ids, images=None, image_flags=None):
        return self.llm.embed(ids)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cfg = transformers.Qwen3Config(
        vocab_size=97,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=LAYERS,
        num_attention_heads=KV * G,
        num_key_value_heads=KV,
        head_dim=HD,
        rope_theta=1e4,
        tie_word_embeddings=True,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    ref = randomise(transformers.Qwen3ForCausalLM(cfg), 0).eval()
    ref.config._attn_implementation = "eager"
    path = tmp_path_factory.mktemp("qwen3")
    ref.save_pretrained(path)
    llm, _ = load_checkpoint(path, overrides={"scan_layers": False})
    ids = np.random.default_rng(0).integers(0, 97, (2, LENGTH))
    return ref, TextOnly(llm), ids


@pytest.fixture(scope="module")
def captured(models):
    """Per layer: the attention module, its input hidden states, RoPE (cos, sin) and the cached
    keys after the prompt (HF, [b, kv, L, hd] post-RoPE) - what a kvpress hook receives."""
    ref, _, ids = models
    seen = {}

    def hook(module, args, kwargs, output):
        seen[module.layer_idx] = (module, kwargs["hidden_states"], kwargs["position_embeddings"])

    hooks = [
        layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in ref.model.layers
    ]
    cache = transformers.DynamicCache(config=ref.config)
    with torch.no_grad():
        ref(torch.from_numpy(ids), past_key_values=cache, use_cache=True)
    for h in hooks:
        h.remove()
    return [(*seen[i], cache.layers[i].keys) for i in range(LAYERS)]


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def snapkv_scores_port(module, hidden, position_embeddings, keys, window, kernel):
    """kvpress SnapKVPress.score (attentions=None branch), in numpy. -> [b, kv, L]."""
    with torch.no_grad():  # get_prerope_query_states: q_proj, view, transpose, q_norm
        h = hidden[:, -window:]
        b, w, _ = h.shape
        q = module.q_norm(module.q_proj(h).view(b, w, KV * G, HD).transpose(1, 2)).numpy()
    keys = keys.numpy()
    cos, sin = (x.numpy()[:, -window:][:, None] for x in position_embeddings)
    q = q * cos + rotate_half(q) * sin
    k_len = keys.shape[2]
    k_rep = np.repeat(keys, G, axis=1)  # repeat_kv
    attn = q @ k_rep.transpose(0, 1, 3, 2) / np.sqrt(HD)
    attn = attn + np.triu(np.full(attn.shape[-2:], -np.inf), k=k_len - window + 1)
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn = (attn / attn.sum(-1, keepdims=True))[..., :-window]
    scores = attn.mean(axis=-2)
    pad = kernel // 2  # F.avg_pool1d(kernel, padding=kernel // 2, stride=1), count_include_pad
    padded = np.pad(scores, [(0, 0), (0, 0), (pad, pad)])
    scores = sum(padded[..., i : i + scores.shape[-1]] for i in range(kernel)) / kernel
    scores = scores.reshape(b, KV, G, k_len - window).mean(2)
    return np.pad(scores, [(0, 0), (0, 0), (0, window)], constant_values=scores.max() + 1)


def streaming_scores_port(keys, ratio, n_sink):
    """kvpress StreamingLLMPress.score, in numpy."""
    k_len = keys.shape[2]
    n_pruned = k_len - int(k_len * (1 - ratio))
    scores = np.ones(keys.shape[:3])
    scores[:, :, n_sink : n_sink + n_pruned] = 0
    return scores


def kept_port(scores, ratio):
    """ScorerPress.compress: the top int(k_len * (1 - ratio)) positions per (row, KV head)."""
    n_kept = int(scores.shape[-1] * (1 - ratio))
    top = np.argsort(-scores, axis=-1, kind="stable")[..., :n_kept]
    return [[set(top[r, h].tolist()) for h in range(KV)] for r in range(scores.shape[0])]


def ours(models, policy, chunk=16):
    """Our kept positions [layer][row][kv head] after the engine's evicting prefill."""
    _, model, ids = models
    b = ids.shape[0]
    t = bucket(LENGTH, chunk)
    padded = np.zeros((b, t), np.int32)
    padded[:, :LENGTH] = ids
    p = plan(policy, 1 - RATIO, [LENGTH] * b, padded=t, chunk=chunk, max_new=1, num_layers=LAYERS)
    graphdef, state = nnx.split(model)
    _, cache, _ = jax.jit(compact_prefill, static_argnames=("graphdef", "setup", "chunk"))(
        graphdef,
        state,
        padded,
        jnp.full((b,), LENGTH, jnp.int32),
        None,
        None,
        jnp.zeros((b, t), bool),
        p.targets,
        setup=p.setup,
        chunk=chunk,
    )
    out = []
    for layer in cache.layers:
        pos = np.asarray(layer.pos)
        out.append(
            [
                [set(pos[r * KV + h][pos[r * KV + h] >= 0].tolist()) for h in range(KV)]
                for r in range(b)
            ]
        )
    return out


def test_snapkv_keeps_the_positions_kvpress_keeps(models, captured):
    mine = ours(models, get_policy("snapkv", window=WINDOW, kernel=5, schedule="end"))
    for layer, (module, hidden, pe, keys) in enumerate(captured):
        want = kept_port(snapkv_scores_port(module, hidden, pe, keys, WINDOW, 5), RATIO)
        assert mine[layer] == want, layer
        assert all(len(s) == int(LENGTH * (1 - RATIO)) for row in want for s in row)
    # the heads disagree (so per-head selection is really compared) and SnapKV != recency
    assert mine[0][0][0] != mine[0][0][1]
    assert mine[0][0][0] != set(range(4)) | set(range(LENGTH - 16, LENGTH))


@pytest.mark.parametrize("schedule", ["chunk"])  # "end" is the same set here
def test_streaming_llm_keeps_the_positions_kvpress_keeps(models, captured, schedule):
    mine = ours(models, get_policy("streaming", sinks=4, window=0, schedule=schedule))
    for layer, (_, _, _, keys) in enumerate(captured):
        assert mine[layer] == kept_port(streaming_scores_port(keys.numpy(), RATIO, 4), RATIO)


def _import_kvpress():
    try:
        import kvpress  # noqa: F401
    except ImportError:
        src = os.environ.get("KVPRESS_SRC")
        if not src:
            pytest.skip("kvpress not installed (it pins transformers<5.3); set KVPRESS_SRC")
        for name in ("kvpress", "kvpress.presses"):  # skip the package __init__'s extra deps
            module = types.ModuleType(name)
            module.__path__ = [os.path.join(src, *name.split("."))]
            sys.modules.setdefault(name, module)
    from kvpress.presses.snapkv_press import SnapKVPress
    from kvpress.presses.streaming_llm_press import StreamingLLMPress

    return SnapKVPress, StreamingLLMPress


def test_port_equals_kvpress_itself(captured):
    SnapKVPress, StreamingLLMPress = _import_kvpress()
    snap = SnapKVPress(compression_ratio=RATIO, window_size=WINDOW, kernel_size=5)
    stream = StreamingLLMPress(compression_ratio=RATIO, n_sink=4)
    for module, hidden, pe, keys in captured:
        with torch.no_grad():
            theirs = snap.score(module, hidden, keys, keys, None, {"position_embeddings": pe})
        port = snapkv_scores_port(module, hidden, pe, keys, WINDOW, 5)
        np.testing.assert_allclose(port, theirs.numpy(), rtol=1e-4, atol=1e-6)
        assert kept_port(port, RATIO) == kept_port(theirs.numpy(), RATIO)
        theirs = stream.score(module, hidden, keys, keys, None, {})
        np.testing.assert_array_equal(streaming_scores_port(keys.numpy(), RATIO, 4), theirs.numpy())
