"""`andesvl-jax demo`: the smallest real end-to-end job until the training stages land.

Builds the tiny AndesVL, renders synthetic images of different sizes, packs them NaViT-style, runs the
vision tower, projector and LLM, decodes greedily with the KV cache, and prints shapes and the
parameter counts of every preset (computed without allocating them).
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.config import PRESETS, PUBLISHED_PARAMS, get_preset
from andesvl_jax.data.patches import pack_images
from andesvl_jax.infer.greedy import greedy_generate
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.params import count_params


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A CHW float image with a few coloured rectangles on a grey background, normalised to [-1, 1]."""
    rng = np.random.default_rng(seed)
    img = np.full((3, height, width), 0.5, np.float32)
    for _ in range(3):
        y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
        img[:, y0:y0 + height // 3, x0:x0 + width // 3] = rng.random(3)[:, None, None]
    return (img - 0.5) / 0.5


def run(args) -> int:
    cfg = get_preset("tiny")
    model = AndesVL(cfg, rngs=nnx.Rngs(0))
    sizes = [(56, 84), (112, 56), (28, 252)]
    images = [synthetic_image(h, w, i) for i, (h, w) in enumerate(sizes)]
    packed = pack_images([images], cfg.vision.patch_size)
    n_tokens = [h * w // (cfg.vision.patch_size * 2) ** 2 for h, w in sizes]
    tok = cfg.tokens
    ids = [tok.im_start, ord("u")]
    for n in n_tokens:
        ids += [tok.img_start] + [tok.image_pad] * n + [tok.img_end]
    ids += [ord(c) for c in "Describe."] + [tok.im_end, tok.im_start, ord("a")]
    input_ids = jnp.asarray([ids], jnp.int32)
    start = time.perf_counter()
    logits, _ = model(input_ids, packed)
    generated = greedy_generate(model, input_ids, packed, max_new_tokens=8)
    elapsed = time.perf_counter() - start
    print(f"images (H x W px): {sizes} -> patches per image {[h * w // 196 for h, w in sizes]}, "
          f"packed buffer {packed.patches.shape}, LLM image tokens {n_tokens}")
    print(f"prompt {input_ids.shape} -> logits {logits.shape}; greedy continuation {np.asarray(generated)[0].tolist()} "
          f"({elapsed:.1f} s incl. compile)")
    print(f"\n{'preset':8s} {'vision':>12s} {'projector':>12s} {'llm':>14s} {'total':>14s} {'published':>10s}")
    for name in PRESETS:
        c = count_params(PRESETS[name])
        pub = f"{PUBLISHED_PARAMS[name] / 1e9:.3f} B" if name in PUBLISHED_PARAMS else "-"
        print(f"{name:8s} {c['vision']:12,d} {c['projector']:12,d} {c['llm']:14,d} {c['total']:14,d} {pub:>10s}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the tiny model end to end on synthetic images")
    p.set_defaults(func=run)
