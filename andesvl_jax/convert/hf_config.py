"""config.json (HF or official AndesVL) <-> AndesVLConfig, with a registry keyed by model_type.

Every unsupported setting is an error naming the field, never a silent mismatch. Special-token ids
come from the checkpoint (tokenizer.json when present, else the config's eos id with the official
token order), never from constants.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Callable

from andesvl_jax.config import AndesVLConfig, SpecialTokens, TextConfig, VisionConfig

ACTIVATION_NAMES = {
    "silu": "silu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
}
OFFICIAL_EOS = 151645
TOKEN_NAMES = {  # SpecialTokens field -> token text
    "pad": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "img_start": "<img>",
    "img_end": "</img>",
    "image_pad": "<|vision_pad|>",
    "think_start": "<think>",
    "think_end": "</think>",
    "box_start": "<|box_start|>",
    "box_end": "<|box_end|>",
    "ref_start": "<|object_ref_start|>",
    "ref_end": "<|object_ref_end|>",
}


class ConfigError(ValueError):
    """config.json holds something this implementation does not support or cannot read."""


def _require(cond: bool, where: str, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: field {field!r} {msg}")


def _activation(value: str, where: str, field: str) -> str:
    _require(
        value in ACTIVATION_NAMES,
        where,
        field,
        f"= {value!r} unsupported; expected {sorted(ACTIVATION_NAMES)}",
    )
    return ACTIVATION_NAMES[value]


def _rope_theta(d: dict, default: float) -> float:
    params = d.get("rope_parameters") or {}
    return float(d.get("rope_theta", params.get("rope_theta", default)))


def parse_qwen3(d: dict, where: str = "text_config") -> TextConfig:
    _require(
        d.get("model_type", "qwen3") == "qwen3",
        where,
        "model_type",
        f"= {d.get('model_type')!r}, expected 'qwen3'",
    )
    _require(
        not d.get("attention_bias", False),
        where,
        "attention_bias",
        "must be false (Qwen3 has none)",
    )
    _require(
        d.get("rope_scaling") in (None, {}),
        where,
        "rope_scaling",
        "is not supported (must be null)",
    )
    rope_type = (d.get("rope_parameters") or {}).get("rope_type", "default")
    _require(
        rope_type == "default", where, "rope_parameters.rope_type", f"= {rope_type!r} unsupported"
    )
    _require(not d.get("use_sliding_window", False), where, "use_sliding_window", "must be false")
    _activation(d.get("hidden_act", "silu"), where, "hidden_act")
    heads = int(d["num_attention_heads"])
    return TextConfig(
        vocab_size=int(d["vocab_size"]),
        hidden_size=int(d["hidden_size"]),
        intermediate_size=int(d["intermediate_size"]),
        num_layers=int(d["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(d.get("num_key_value_heads", heads)),
        head_dim=int(d.get("head_dim") or d["hidden_size"] // heads),
        rope_theta=_rope_theta(d, 1e6),
        norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(d.get("tie_word_embeddings", True)),
        max_position=int(d.get("max_position_embeddings", TextConfig.max_position)),
    )


def _tower_shape(d: dict) -> dict:
    """The ViT size fields every vision config spells the same way."""
    return dict(
        hidden_size=int(d["hidden_size"]),
        num_layers=int(d["num_hidden_layers"]),
        num_heads=int(d["num_attention_heads"]),
        intermediate_size=int(d["intermediate_size"]),
        patch_size=int(d["patch_size"]),
        num_channels=int(d.get("num_channels", 3)),
    )


def parse_official_aimv2(d: dict, where: str = "vision_config") -> VisionConfig:
    _require(not d.get("qkv_bias", False), where, "qkv_bias", "must be false for AIMv2")
    _require(not d.get("use_bias", False), where, "use_bias", "must be false for AIMv2")
    _require(
        int(d.get("hidden_stride", 2)) == 2, where, "hidden_stride", "must be 2 (2x2 pixel shuffle)"
    )
    _require(
        int(d.get("temporal_patch_size", 1)) == 1,
        where,
        "temporal_patch_size",
        "must be 1 (images only)",
    )
    _require(
        d.get("fullatt_block_indexes") is None,
        where,
        "fullatt_block_indexes",
        "must be null (windowed attention blocks are not implemented)",
    )
    return VisionConfig(
        flavour="aimv2",
        **_tower_shape(d),
        pos_grid=int(d["image_size"]) // int(d["patch_size"]),
        norm_eps=float(d.get("rms_norm_eps", 1e-5)),
        hidden_act="silu",
        use_rope2d=not d.get("disable_rope", False),
        rope_theta=float(d.get("rope_theta", 1e4)),
    )


def _pos_grid(num_patches: int, where: str) -> int:
    g = math.isqrt(num_patches)
    _require(g * g == num_patches, where, "num_patches", f"= {num_patches} is not a square grid")
    return g


def parse_official_siglip2(d: dict, where: str = "vision_config") -> VisionConfig:
    # The official (vLLM) SigLIP2 tower uses exact-erf GELU whatever hidden_act says; see
    # ../shared/fixtures/andesvl_siglip2_tiny/README.md. Override vision.hidden_act to test tanh.
    _activation(d.get("hidden_act", "gelu_pytorch_tanh"), where, "hidden_act")
    return VisionConfig(
        flavour="siglip2",
        **_tower_shape(d),
        pos_grid=_pos_grid(int(d["num_patches"]), where),
        norm_eps=float(d.get("layer_norm_eps", 1e-6)),
        hidden_act="gelu",
        use_rope2d=True,
        rope_theta=float(d.get("rope_theta", 1e4)),
    )


def parse_hf_siglip2(d: dict, where: str = "config") -> VisionConfig:
    """HF Siglip2VisionModel: no RoPE, bilinear anti-aliased position resize, config's activation."""
    return VisionConfig(
        flavour="siglip2",
        **_tower_shape(d),
        pos_grid=_pos_grid(int(d["num_patches"]), where),
        norm_eps=float(d.get("layer_norm_eps", 1e-6)),
        hidden_act=_activation(d.get("hidden_act", "gelu_pytorch_tanh"), where, "hidden_act"),
        use_rope2d=False,
        pos_interpolation="bilinear_aa",
    )


def parse_hf_aimv2(d: dict, where: str = "config") -> VisionConfig:
    """HF Aimv2VisionModel: fixed learned position table (image_size/patch)^2, no RoPE."""
    _require(not d.get("qkv_bias", False), where, "qkv_bias", "must be false for AIMv2")
    _require(not d.get("mlp_bias", False), where, "mlp_bias", "must be false for AIMv2")
    _require(
        not d.get("is_native", False), where, "is_native", "(sin-cos positions) is not supported"
    )
    return VisionConfig(
        flavour="aimv2",
        **_tower_shape(d),
        pos_grid=int(d["image_size"]) // int(d["patch_size"]),
        norm_eps=float(d.get("rms_norm_eps", 1e-5)),
        hidden_act=_activation(d.get("hidden_act", "silu"), where, "hidden_act"),
        use_rope2d=False,
    )


def special_tokens(directory: pathlib.Path, text: dict) -> SpecialTokens:
    """Token ids from tokenizer.json if present, else from eos_token_id assuming the official order."""
    tok = directory / "tokenizer.json"
    if tok.exists():
        added = {t["content"]: t["id"] for t in json.loads(tok.read_text()).get("added_tokens", [])}
        missing = [name for name in TOKEN_NAMES.values() if name not in added]
        if missing:
            raise ConfigError(f"{tok}: special tokens {missing} not in added_tokens")
        return SpecialTokens(**{field: added[name] for field, name in TOKEN_NAMES.items()})
    eos = text.get("eos_token_id") or OFFICIAL_EOS
    eos = eos[0] if isinstance(eos, list) else eos
    return SpecialTokens.shifted(int(eos) - OFFICIAL_EOS)


def _andesvl(parse_vision: Callable[[dict], VisionConfig]):
    def parse(d: dict, directory: pathlib.Path) -> AndesVLConfig:
        for key in ("text_config", "vision_config"):
            _require(key in d, str(directory / "config.json"), key, "is missing")
        return AndesVLConfig(
            vision=parse_vision(d["vision_config"]),
            text=parse_qwen3(d["text_config"]),
            tokens=special_tokens(directory, d["text_config"]),
        )

    return parse


# model_type -> parser(config dict, directory) -> AndesVLConfig. For vision-only and text-only
# checkpoints the other half keeps its default structure; the loader builds only the half they hold.
CONFIG_PARSERS: dict[str, Callable[[dict, pathlib.Path], AndesVLConfig]] = {
    "andesvl-aimv2-qwen3": _andesvl(parse_official_aimv2),
    "andesvl-siglip2-qwen3": _andesvl(parse_official_siglip2),
    "qwen3": lambda d, p: AndesVLConfig(text=parse_qwen3(d, "config"), tokens=special_tokens(p, d)),
    "siglip2_vision_model": lambda d, p: AndesVLConfig(vision=parse_hf_siglip2(d)),
    "siglip2": lambda d, p: AndesVLConfig(
        vision=parse_hf_siglip2(d.get("vision_config", {}), "vision_config")
    ),
    "aimv2_vision_model": lambda d, p: AndesVLConfig(vision=parse_hf_aimv2(d)),
}


def read_config(directory: str | pathlib.Path) -> tuple[str, AndesVLConfig]:
    """(model_type, AndesVLConfig) of a checkpoint directory."""
    directory = pathlib.Path(directory)
    path = directory / "config.json"
    if not path.exists():
        raise ConfigError(f"{path}: not found")
    d = json.loads(path.read_text())
    model_type = d.get("model_type")
    if model_type not in CONFIG_PARSERS:
        raise ConfigError(
            f"{path}: unknown model_type {model_type!r}; supported: {sorted(CONFIG_PARSERS)}"
        )
    try:
        return model_type, CONFIG_PARSERS[model_type](d, directory).validate()
    except KeyError as e:
        raise ConfigError(f"{path}: required field {e.args[0]!r} is missing") from e


def qwen3_fields(t: TextConfig) -> dict:
    """The transformers `Qwen3Config` fields that describe `t` (no token ids)."""
    return {
        "vocab_size": t.vocab_size,
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_layers,
        "num_attention_heads": t.num_heads,
        "num_key_value_heads": t.num_kv_heads,
        "head_dim": t.head_dim,
        "rope_theta": t.rope_theta,
        "max_position_embeddings": t.max_position,
        "rms_norm_eps": t.norm_eps,
        "tie_word_embeddings": t.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "rope_scaling": None,
        "use_sliding_window": False,
    }


def official_config(cfg: AndesVLConfig) -> dict:
    """The official AndesVL config.json for `cfg` (what export writes)."""
    v = cfg.vision
    text = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        **qwen3_fields(cfg.text),
        "bos_token_id": cfg.tokens.pad,
        "eos_token_id": cfg.tokens.im_end,
    }
    common = {
        "hidden_size": v.hidden_size,
        "num_hidden_layers": v.num_layers,
        "num_attention_heads": v.num_heads,
        "intermediate_size": v.intermediate_size,
        "patch_size": v.patch_size,
        "num_channels": v.num_channels,
        "rope_theta": v.rope_theta,
    }
    if v.flavour == "aimv2":
        vision = {
            **common,
            "model_type": "aimv2",
            "image_size": v.pos_grid * v.patch_size,
            "rms_norm_eps": v.norm_eps,
            "disable_rope": not v.use_rope2d,
            "hidden_stride": cfg.shuffle_factor,
            "qkv_bias": False,
            "use_bias": False,
            "fullatt_block_indexes": None,
            "temporal_patch_size": 1,
        }
    else:
        vision = {
            **common,
            "model_type": "siglip2_navit_rope_model",
            "num_patches": v.pos_grid**2,
            "layer_norm_eps": v.norm_eps,
            "hidden_act": "gelu_pytorch_tanh",
            "preserve_original_pe": True,
        }
    return {
        "architectures": ["AndesVLForConditionalGeneration"],
        "model_type": f"andesvl-{v.flavour}-qwen3",
        "torch_dtype": cfg.param_dtype,
        "text_config": text,
        "vision_config": vision,
    }
