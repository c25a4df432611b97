"""EAGLE draft head: a one-layer feature-level draft model over a frozen Qwen3 target.

EAGLE drafts at the feature level: at position i it takes the target's final hidden state f_i (the
input of the LM head) and the embedding of the *next* token x_{i+1}, fuses them with
Linear(2d -> d), runs one Qwen3 decoder layer and predicts f_{i+1}; the target's own (frozen) LM
head turns that into next-token logits. Later draft steps feed the draft's own output back as the
feature. The token embedding and LM head are the target's (not copied, not trained).

Option `draft_vocab > 0`: a reduced draft vocabulary (EAGLE-3's d2t / t2d maps): the draft has its own
    LM head over the `draft_vocab` most frequent target tokens; `d2t[j]` is the target id of draft
    token j. Drafting top-k then costs d x draft_vocab per row instead of d x vocab.

Multimodal prompts: the "token embedding" of an image position is the merged input embedding
(the projected image token), so the draft sees the image tokens as the target did.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from andesvl_jax.config import TextConfig
from andesvl_jax.models.layers import Linear, RMSNorm
from andesvl_jax.models.qwen3 import Qwen3Layer, TreeMask


class DraftVocab(nnx.Variable):
    """Non-trainable index map of a reduced draft vocabulary (draft id -> target id)."""


@dataclasses.dataclass(frozen=True)
class DraftConfig:
    """text: the draft layer's decoder config (the target's, num_layers is ignored: one layer);
    draft_vocab: 0 = the target's full LM head, else the size of the reduced head."""

    text: TextConfig
    draft_vocab: int = 0

    def validate(self) -> DraftConfig:
        self.text.validate()
        if not 0 <= self.draft_vocab <= self.text.vocab_size:
            raise ValueError(
                f"draft_vocab {self.draft_vocab} must be in [0, target vocab "
                f"{self.text.vocab_size}] (0 = the target's full LM head)"
            )
        return self

    @classmethod
    def for_target(cls, target: TextConfig, **kw) -> DraftConfig:
        return cls(text=dataclasses.replace(target, num_layers=1), **kw).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DraftConfig:
        d = dict(d)
        return cls(text=TextConfig(**d.pop("text")), **d).validate()


class DraftHead(nnx.Module):
    def __init__(
        self, cfg: DraftConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32
    ):
        cfg.validate()
        d = cfg.text.hidden_size
        dtypes = dict(param_dtype=param_dtype, dtype=dtype)
        self.cfg = cfg
        self.fc = Linear(2 * d, d, axes=("mlp", "embed"), rngs=rngs, **dtypes)
        self.layer = Qwen3Layer(cfg.text, rngs=rngs, **dtypes)
        if cfg.draft_vocab:
            self.norm = RMSNorm(d, eps=cfg.text.norm_eps, axis_name="embed", **dtypes)
            self.lm_head = Linear(d, cfg.draft_vocab, axes=("embed", "vocab"), rngs=rngs, **dtypes)
            self.d2t = DraftVocab(jnp.arange(cfg.draft_vocab, dtype=jnp.int32))
        else:
            self.norm = self.lm_head = self.d2t = None

    def check_target(self, target: TextConfig) -> None:
        """ValueError unless this head fits `target` (the Qwen3 config of the model it drafts for)."""
        mine = self.cfg.text
        for field in ("hidden_size", "vocab_size"):
            if getattr(mine, field) != getattr(target, field):
                raise ValueError(
                    f"draft head {field} {getattr(mine, field)} does not match the target's "
                    f"{getattr(target, field)}: the head was trained for another model"
                )

    def __call__(
        self,
        embeds: jax.Array,
        feats: jax.Array,
        positions: jax.Array,
        segment_ids: jax.Array,
        cache_kv=None,
        cache_lengths: jax.Array | None = None,
        tree: TreeMask | None = None,
    ):
        """embeds [b, t, d] (embedding of x_{i+1}); feats [b, t, d] (f_i) -> (g [b, t, d], kv).

        Without a cache: packed training (causal within segments). With cache_kv = (k, v) of one
        layer ([b * kv, S, hd]) the call writes at cache_lengths like a Qwen3 layer, `tree` as in
        `Qwen3.__call__`."""
        x = self.fc(jnp.concatenate([embeds.astype(feats.dtype), feats], axis=-1))
        return self.layer(x, positions, segment_ids, cache_kv, cache_lengths, "xla", tree)

    def logits(self, target_llm, g: jax.Array) -> jax.Array:
        """Draft features [..., d] -> float32 logits over the draft vocabulary (`to_target` maps
        draft ids to target ids): the target's LM head, or the reduced head."""
        if self.lm_head is None:
            return target_llm.logits(g)
        return self.lm_head(self.norm(g)).astype(jnp.float32)

    def to_target(self, ids: jax.Array) -> jax.Array:
        return ids if self.d2t is None else jnp.take(self.d2t[...], ids)

    @property
    def vocab(self) -> int:
        return self.cfg.draft_vocab or self.cfg.text.vocab_size


def new_draft_head(target_text: TextConfig, *, seed: int = 0, **kw) -> DraftHead:
    """A randomly initialised head for a target with Qwen3 config `target_text`."""
    return DraftHead(DraftConfig.for_target(target_text, **kw), rngs=nnx.Rngs(seed))
