"""Checkpoint key maps: which of their tensors become which of our parameters, and how (both ways).

A `Rule` ties a group of their tensors to a group of our parameter paths with a pair of pure numpy
transforms (load: theirs -> ours, save: ours -> theirs), so import and export share one table and a
round trip is exact. Templates with `{i}` repeat over a tower's layers. A `KeyMap` says which module
a checkpoint fills ('andesvl', 'llm' or 'vision') and which of its keys are known but unused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable

import numpy as np

from andesvl_jax.config import AndesVLConfig

Transform = Callable[..., tuple[np.ndarray, ...]]
Index = tuple[slice, ...]


@dataclasses.dataclass(frozen=True)
class Rule:
    theirs: tuple[str, ...]
    ours: tuple[str, ...]
    load: Transform
    save: Transform
    tower: str | None = None  # 'vision' or 'text' when the templates contain {i}
    # For one source tensor whose `load` only permutes or drops axes: our index -> theirs, so that a
    # device's shard reads only its slice of the file (None: read the whole tensor, then slice).
    theirs_index: Callable[[Index], Index] | None = None


@dataclasses.dataclass(frozen=True)
class KeyMap:
    module: str  # which module the checkpoint fills: 'andesvl' | 'llm' | 'vision'
    rules: tuple[Rule, ...]
    ignored: tuple[
        str, ...
    ] = ()  # fnmatch patterns of tensors that exist but are not used (reported)

    def is_ignored(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.ignored)


def _same(*a):
    return a


def _transpose(w):
    return (np.swapaxes(w, 0, 1),)


def _unsqueeze(w):
    return (w[None],)


def _squeeze(w):
    return (w[0],)


def _split_qkv(w):
    q, k, v = np.split(w, 3, axis=0)
    return q.T, k.T, v.T


def _merge_qkv(q, k, v):
    return (np.concatenate([q.T, k.T, v.T], axis=0),)


def _conv_to_kernel(w):
    """Conv2d weight (d, c, p, p) -> kernel (c*p*p, d); the patch vector is ordered (c, y, x)."""
    return (w.reshape(w.shape[0], -1).T,)


def _conv_transforms(cfg: AndesVLConfig) -> tuple[Transform, Transform]:
    """Conv2d patch embedding <-> our (c*p*p, d) kernel, both directions."""
    shape = (cfg.vision.num_channels, cfg.vision.patch_size, cfg.vision.patch_size)
    return _conv_to_kernel, lambda k: (k.T.reshape(k.shape[1], *shape),)


def _patch_permutation(channels: int, patch: int) -> tuple[Transform, Transform]:
    """HF SigLIP2 flattens patches as (y, x, c); ours are (c, y, x)."""

    def load(w):
        d = w.shape[0]
        return (w.reshape(d, patch, patch, channels).transpose(0, 3, 1, 2).reshape(d, -1).T,)

    def save(k):
        d = k.shape[1]
        return (k.T.reshape(d, channels, patch, patch).transpose(0, 2, 3, 1).reshape(d, -1),)

    return load, save


def _swap01(ix: Index) -> Index:
    ix = tuple(ix) + (slice(None),) * (2 - len(ix))
    return (ix[1], ix[0], *ix[2:])


# load transform -> how it maps our index to theirs (the transforms that are pure axis moves)
SLICEABLE: dict[Transform, Callable[[Index], Index]] = {
    _same: tuple,
    _transpose: _swap01,
    _squeeze: lambda ix: (slice(None), *ix),
}


def _rule(theirs, ours, load=_same, save=_same, tower=None) -> Rule:
    theirs = (theirs,) if isinstance(theirs, str) else tuple(theirs)
    ours = (ours,) if isinstance(ours, str) else tuple(ours)
    index = SLICEABLE.get(load) if len(theirs) == len(ours) == 1 else None
    return Rule(theirs, ours, load, save, tower, index)


def _linear(theirs: str, ours: str, bias: bool, tower: str | None) -> list[Rule]:
    rules = [_rule(f"{theirs}.weight", f"{ours}.kernel", _transpose, _transpose, tower)]
    if bias:
        rules.append(_rule(f"{theirs}.bias", f"{ours}.bias", tower=tower))
    return rules


def _norm(theirs: str, ours: str, bias: bool, tower: str | None) -> list[Rule]:
    rules = [_rule(f"{theirs}.weight", f"{ours}.scale", tower=tower)]
    if bias:
        rules.append(_rule(f"{theirs}.bias", f"{ours}.bias", tower=tower))
    return rules


def qwen3_rules(cfg: AndesVLConfig, theirs: str, ours: str) -> list[Rule]:
    """HF Qwen3ForCausalLM under prefix `theirs` -> our Qwen3 under prefix `ours`."""
    layer, mine = f"{theirs}model.layers.{{i}}.", f"{ours}layers.{{i}}."
    rules = [
        _rule(f"{theirs}model.embed_tokens.weight", f"{ours}embed.embedding"),
        *_norm(f"{theirs}model.norm", f"{ours}final_norm", False, None),
        *_norm(f"{layer}input_layernorm", f"{mine}input_norm", False, "text"),
        *_norm(f"{layer}post_attention_layernorm", f"{mine}post_norm", False, "text"),
        *_norm(f"{layer}self_attn.q_norm", f"{mine}attn.q_norm", False, "text"),
        *_norm(f"{layer}self_attn.k_norm", f"{mine}attn.k_norm", False, "text"),
    ]
    for name in "qkvo":
        rules += _linear(f"{layer}self_attn.{name}_proj", f"{mine}attn.{name}", False, "text")
    for name in ("gate", "up", "down"):
        rules += _linear(f"{layer}mlp.{name}_proj", f"{mine}mlp.{name}", False, "text")
    if not cfg.text.tie_embeddings:
        rules += _linear(f"{theirs}lm_head", f"{ours}lm_head", False, None)
    return rules


def official_aimv2_rules(cfg: AndesVLConfig, theirs: str, ours: str) -> list[Rule]:
    """Official AndesVL AIMv2 tower (`vision_encoder.preprocessor/trunk`)."""
    block, mine = f"{theirs}trunk.blocks.{{i}}.", f"{ours}layers.{{i}}."
    return [
        _rule(
            f"{theirs}preprocessor.patchifier.proj.weight",
            f"{ours}patch_embed.kernel",
            *_conv_transforms(cfg),
        ),
        _rule(f"{theirs}preprocessor.patchifier.proj.bias", f"{ours}patch_embed.bias"),
        *_norm(f"{theirs}preprocessor.patchifier.norm", f"{ours}patch_norm", False, None),
        _rule(f"{theirs}preprocessor.pos_embed", f"{ours}pos_embed", _squeeze, _unsqueeze),
        _rule(
            f"{block}attn.qkv.weight",
            (f"{mine}attn.q.kernel", f"{mine}attn.k.kernel", f"{mine}attn.v.kernel"),
            _split_qkv,
            _merge_qkv,
            "vision",
        ),
        *_linear(f"{block}attn.proj", f"{mine}attn.o", False, "vision"),
        *_linear(f"{block}mlp.fc1", f"{mine}mlp.gate", False, "vision"),
        *_linear(f"{block}mlp.fc3", f"{mine}mlp.up", False, "vision"),
        *_linear(f"{block}mlp.fc2", f"{mine}mlp.down", False, "vision"),
        *_norm(f"{block}norm_1", f"{mine}norm1", False, "vision"),
        *_norm(f"{block}norm_2", f"{mine}norm2", False, "vision"),
        *_norm(f"{theirs}trunk.post_trunk_norm", f"{ours}post_norm", False, None),
    ]


def _siglip2_encoder_rules(theirs: str, ours: str) -> list[Rule]:
    """SigLIP2 encoder layers + post norm: the same names in HF and the official (vLLM) tower."""
    layer, mine = f"{theirs}encoder.layers.{{i}}.", f"{ours}layers.{{i}}."
    rules = [
        *_norm(f"{layer}layer_norm1", f"{mine}norm1", True, "vision"),
        *_norm(f"{layer}layer_norm2", f"{mine}norm2", True, "vision"),
        *_linear(f"{layer}self_attn.out_proj", f"{mine}attn.o", True, "vision"),
        *_linear(f"{layer}mlp.fc1", f"{mine}mlp.fc1", True, "vision"),
        *_linear(f"{layer}mlp.fc2", f"{mine}mlp.fc2", True, "vision"),
        *_norm(f"{theirs}post_layernorm", f"{ours}post_norm", True, None),
    ]
    for name in "qkv":
        rules += _linear(f"{layer}self_attn.{name}_proj", f"{mine}attn.{name}", True, "vision")
    return rules


def official_siglip2_rules(cfg: AndesVLConfig, theirs: str, ours: str) -> list[Rule]:
    """Official AndesVL-0.6B SigLIP2 tower (vLLM module names, patch vectors already (c, y, x))."""
    return [
        *_linear(f"{theirs}embeddings.proj", f"{ours}patch_embed", True, None),
        _rule(f"{theirs}embeddings.pos_embed.weight", f"{ours}pos_embed"),
        *_siglip2_encoder_rules(theirs, ours),
    ]


def hf_siglip2_rules(cfg: AndesVLConfig, theirs: str, ours: str) -> list[Rule]:
    load, save = _patch_permutation(cfg.vision.num_channels, cfg.vision.patch_size)
    return [
        _rule(
            f"{theirs}embeddings.patch_embedding.weight", f"{ours}patch_embed.kernel", load, save
        ),
        _rule(f"{theirs}embeddings.patch_embedding.bias", f"{ours}patch_embed.bias"),
        _rule(f"{theirs}embeddings.position_embedding.weight", f"{ours}pos_embed"),
        *_siglip2_encoder_rules(theirs, ours),
    ]


def hf_aimv2_rules(cfg: AndesVLConfig, theirs: str, ours: str) -> list[Rule]:
    layer, mine = f"{theirs}encoder.layers.{{i}}.", f"{ours}layers.{{i}}."
    rules = [
        _rule(
            f"{theirs}embeddings.patch_embed.weight",
            f"{ours}patch_embed.kernel",
            *_conv_transforms(cfg),
        ),
        _rule(f"{theirs}embeddings.patch_embed.bias", f"{ours}patch_embed.bias"),
        *_norm(f"{theirs}embeddings.rms_norm", f"{ours}patch_norm", False, None),
        _rule(f"{theirs}embeddings.position_embedding.weight", f"{ours}pos_embed"),
        *_norm(f"{layer}rms_norm1", f"{mine}norm1", False, "vision"),
        *_norm(f"{layer}rms_norm2", f"{mine}norm2", False, "vision"),
        *_linear(f"{layer}attention.out_proj", f"{mine}attn.o", False, "vision"),
        *_norm(f"{theirs}rms_norm", f"{ours}post_norm", False, None),
    ]
    for name in "qkv":
        rules += _linear(f"{layer}attention.{name}_proj", f"{mine}attn.{name}", False, "vision")
    for name in ("gate", "up", "down"):
        rules += _linear(f"{layer}ffn.{name}_proj", f"{mine}mlp.{name}", False, "vision")
    return rules


def projector_rules(cfg: AndesVLConfig) -> list[Rule]:
    return [
        *_linear("mlp.0", "projector.mlp.fc1", True, None),
        *_linear("mlp.2", "projector.mlp.fc2", True, None),
    ]


def _andesvl(vision_rules) -> Callable[[AndesVLConfig, tuple[str, ...]], KeyMap]:
    def build(cfg: AndesVLConfig, keys: tuple[str, ...] = ()) -> KeyMap:
        return KeyMap(
            "andesvl",
            tuple(
                vision_rules(cfg, "vision_encoder.", "vision.")
                + projector_rules(cfg)
                + qwen3_rules(cfg, "language_model.", "llm.")
            ),
            ignored=("language_model.lm_head.weight",) if cfg.text.tie_embeddings else (),
        )

    return build


def _vision_prefix(keys: tuple[str, ...]) -> str:
    """HF saves a vision-only model with or without `vision_model.` (depends on the version)."""
    return "vision_model." if any(k.startswith("vision_model.") for k in keys) else ""


# model_type -> (config, the checkpoint's tensor names) -> KeyMap
KEYMAPS: dict[str, Callable[[AndesVLConfig, tuple[str, ...]], KeyMap]] = {
    "andesvl-aimv2-qwen3": _andesvl(lambda c, t, o: official_aimv2_rules(c, t, o)),
    "andesvl-siglip2-qwen3": _andesvl(
        lambda c, t, o: official_siglip2_rules(c, t + "vision_model.", o)
    ),
    "qwen3": lambda c, keys: KeyMap(
        "llm",
        tuple(qwen3_rules(c, "", "")),
        ignored=("lm_head.weight",) if c.text.tie_embeddings else (),
    ),
    "siglip2_vision_model": lambda c, keys: KeyMap(
        "vision",
        tuple(hf_siglip2_rules(c, _vision_prefix(keys), "")),
        ignored=("head.*", "vision_model.head.*"),
    ),
    # A full SigLIP2 (image + text towers): only the vision tower is used.
    "siglip2": lambda c, keys: KeyMap(
        "vision",
        tuple(hf_siglip2_rules(c, "vision_model.", "")),
        ignored=("vision_model.head.*", "text_model.*", "logit_scale", "logit_bias"),
    ),
    "aimv2_vision_model": lambda c, keys: KeyMap(
        "vision", tuple(hf_aimv2_rules(c, "", "")), ignored=("head.*",)
    ),
}
