"""The whole tiny AndesVL with attention_impl='pallas' (interpret mode on CPU) equals 'xla'.

Covers every attention the model makes: bidirectional packed ViT segments, causal packed LLM
segments, KV-cache decoding, and the gradient path training uses.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from kernel_testing import assert_close

from andesvl_jax.config import get_preset
from andesvl_jax.data.patches import pack_images
from andesvl_jax.models.andesvl import AndesVL


def build(impl):
    return AndesVL(
        get_preset("tiny", attention_impl=impl), rngs=nnx.Rngs(0)
    )  # same seed -> same weights


def inputs(cfg, rng):
    """One row with two images (1 and 2 LLM tokens), one packed text-only row."""
    p = cfg.vision.patch_size
    images = pack_images([[rng.random((3, 2 * p, 2 * p)), rng.random((3, 2 * p, 4 * p))], []], p)
    tok = cfg.tokens
    row0 = [
        5,
        6,
        tok.img_start,
        tok.image_pad,
        tok.img_end,
        tok.img_start,
        tok.image_pad,
        tok.image_pad,
        tok.img_end,
        7,
        8,
        9,
    ]
    row1 = [
        10,
        11,
        12,
        13,
        14,
        20,
        21,
        22,
        23,
        tok.pad,
        tok.pad,
        tok.pad,
    ]  # two packed samples + padding
    ids = jnp.asarray([row0, row1], jnp.int32)
    seg = jnp.asarray([[1] * 12, [1] * 5 + [2] * 4 + [0] * 3], jnp.int32)
    pos = jnp.asarray([list(range(12)), list(range(5)) + list(range(4)) + [0] * 3], jnp.int32)
    return ids, images, seg, pos


def test_prefill_logits_match_xla():
    rng = np.random.default_rng(0)
    pallas_model, xla_model = build("pallas"), build("xla")
    ids, images, seg, pos = inputs(pallas_model.cfg, rng)
    got, _ = pallas_model(ids, images, segment_ids=seg, positions=pos)
    want, _ = xla_model(ids, images, segment_ids=seg, positions=pos)
    valid = np.asarray(seg) != 0  # padding rows attend to padding: compare only real tokens
    assert_close(np.asarray(got)[valid], np.asarray(want)[valid])


def test_kv_cache_decoding_matches_xla():
    pallas_model, xla_model = build("pallas"), build("xla")
    ids = jnp.asarray([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]], jnp.int32)
    outs = []
    for model in (pallas_model, xla_model):
        cache = model.init_cache(2, 16)
        logits, cache = model(ids, cache=cache)
        step, _ = model(jnp.argmax(logits[:, -1:], -1).astype(jnp.int32), cache=cache)
        outs.append((logits, step))
    for got, want in zip(*outs, strict=True):
        assert_close(got, want)


def test_gradients_match_xla():
    rng = np.random.default_rng(1)
    grads = []
    for impl in ("pallas", "xla"):
        model = build(impl)
        ids, images, seg, pos = inputs(
            model.cfg, rng if impl == "pallas" else np.random.default_rng(1)
        )
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params, graphdef=graphdef, rest=rest, ids=ids, images=images, seg=seg, pos=pos):
            logits, _ = nnx.merge(graphdef, params, rest)(
                ids, images, segment_ids=seg, positions=pos
            )
            return jnp.sum(jax.nn.log_softmax(logits)[..., 0] * (seg != 0))

        grads.append(jax.grad(loss)(params))
    for got, want in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        assert_close(got, want)
