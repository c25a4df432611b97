"""AndesVL: NaViT vision tower -> pixel shuffle + MLP projector -> Qwen3, image tokens merged by placeholder.

Text row b pairs with packed-image row b: the j-th `<|vision_pad|>` of text row b is replaced by the
j-th image token of vision row b (images in placeholder order, 2x2 patch groups in packed order,
padding skipped). A text-only batch passes `images=None` and never touches the vision tower.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.config import AndesVLConfig
from andesvl_jax.models.projector import Projector
from andesvl_jax.models.qwen3 import KVCache, Qwen3
from andesvl_jax.models.vit import VisionEncoder


def merge_image_tokens(
    text_embeds: jax.Array,
    is_placeholder: jax.Array,
    image_tokens: jax.Array,
    image_valid: jax.Array,
) -> jax.Array:
    """text_embeds [b, t, d]; is_placeholder [b, t]; image_tokens [b, m, d]; image_valid [b, m] -> [b, t, d]."""
    # Stable sort puts the valid image tokens first, in order; the k-th placeholder takes the k-th.
    order = jnp.argsort(~image_valid, axis=1, stable=True)
    k = jnp.clip(jnp.cumsum(is_placeholder, axis=1) - 1, 0, image_tokens.shape[1] - 1)
    source = jnp.take_along_axis(order, k, axis=1)
    gathered = jnp.take_along_axis(image_tokens, source[..., None], axis=1)
    return jnp.where(is_placeholder[..., None], gathered.astype(text_embeds.dtype), text_embeds)


def run_options(cfg: AndesVLConfig) -> dict:
    """The execution options every tower takes (scan, remat, attention impl, dtypes)."""
    return dict(
        scan=cfg.scan_layers,
        remat=cfg.remat,
        attention_impl=cfg.attention_impl,
        param_dtype=jnp.dtype(cfg.param_dtype),
        dtype=jnp.dtype(cfg.dtype),
    )


class AndesVL(nnx.Module):
    def __init__(self, cfg: AndesVLConfig, *, rngs: nnx.Rngs):
        cfg.validate()
        run = run_options(cfg)
        self.cfg = cfg
        self.vision = VisionEncoder(cfg.vision, rngs=rngs, **run)
        self.projector = Projector(
            cfg, rngs=rngs, param_dtype=run["param_dtype"], dtype=run["dtype"]
        )
        self.llm = Qwen3(cfg.text, rngs=rngs, **run)

    def encode_images(self, images) -> tuple[jax.Array, jax.Array]:
        """PackedImages [b, N] -> (image tokens [b, N/4, d_llm], valid [b, N/4])."""
        tokens, segments = self.projector(self.vision(images), images.segment_ids)
        return tokens, segments != 0

    def embed(
        self, input_ids: jax.Array, images=None, image_flags: jax.Array | None = None
    ) -> jax.Array:
        """Token embeddings with image tokens merged in. input_ids [b, t] -> [b, t, d].

        image_flags [b, t]: which positions take image tokens (default: input_ids == image_pad id).
        """
        embeds = self.llm.embed(input_ids)
        if images is None:
            return embeds
        tokens, valid = self.encode_images(images)
        flags = (
            input_ids == self.cfg.tokens.image_pad
            if image_flags is None
            else image_flags.astype(bool)
        )
        return merge_image_tokens(embeds, flags, tokens, valid)

    def __call__(
        self,
        input_ids: jax.Array,
        images=None,
        *,
        image_flags: jax.Array | None = None,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: KVCache | None = None,
        return_hidden: bool = False,
    ):
        """input_ids [b, t] (+ PackedImages) -> (logits [b, t, vocab] float32, cache).

        Without `segment_ids` every token is one sample per row; without `positions` they count from
        the cache length (or 0). With `return_hidden` the final hidden states replace the logits.
        """
        b, t = input_ids.shape
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        if positions is None:
            start = jnp.zeros((b,), jnp.int32) if cache is None else cache.lengths
            positions = start[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]
        hidden, cache = self.llm(
            self.embed(input_ids, images, image_flags), positions, segment_ids, cache
        )
        return (hidden if return_hidden else self.llm.logits(hidden)), cache

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """Empty cache, layers stacked like the LLM's (a tuple of per-layer buffers when unstacked)."""
        return KVCache.init(
            self.cfg.text, batch, max_len, jnp.dtype(self.cfg.dtype), stacked=self.llm.scan
        )
