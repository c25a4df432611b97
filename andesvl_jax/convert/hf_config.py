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


_MISSING = object()
MAX_CONFIG_BYTES = 64 * 2**20  # config.json is kilobytes, tokenizer.json up to ~35 MB


def _int(d: dict, field: str, where: str, default=_MISSING) -> int:
    """d[field] as a positive int (an integral number in the JSON), else a ConfigError naming it."""
    value = d[field] if default is _MISSING else d.get(field, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and float(value).is_integer() and 1 <= value <= 2**40
    _require(ok, where, field, f"= {value!r:.60}; expected a positive integer")
    return int(value)


def _float(d: dict, field: str, where: str, default=_MISSING) -> float:
    """d[field] as a positive finite float, else a ConfigError naming it."""
    value = d[field] if default is _MISSING else d.get(field, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    _require(ok and math.isfinite(value) and value > 0, where, field,
             f"= {value!r:.60}; expected a positive finite number")  # fmt: skip
    return float(value)


def _section(d: dict, field: str, where: str) -> dict:
    value = d.get(field)
    _require(isinstance(value, dict), where, field, f"must be a JSON object, got {value!r:.60}")
    return value


def _activation(value: str, where: str, field: str) -> str:
    _require(
        isinstance(value, str) and value in ACTIVATION_NAMES,
        where,
        field,
        f"= {value!r} unsupported; expected {sorted(ACTIVATION_NAMES)}",
    )
    return ACTIVATION_NAMES[value]


def _rope_theta(d: dict, default: float, where: str = "text_config") -> float:
    params = d.get("rope_parameters") or {}
    _require(isinstance(params, dict), where, "rope_parameters", "must be a JSON object")
    if "rope_theta" in d:
        return _float(d, "rope_theta", where)
    return _float(params, "rope_theta", f"{where}.rope_parameters", default)


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
    params = d.get("rope_parameters") or {}
    _require(isinstance(params, dict), where, "rope_parameters", "must be a JSON object")
    rope_type = params.get("rope_type", "default")
    _require(
        rope_type == "default", where, "rope_parameters.rope_type", f"= {rope_type!r} unsupported"
    )
    _require(not d.get("use_sliding_window", False), where, "use_sliding_window", "must be false")
    _activation(d.get("hidden_act", "silu"), where, "hidden_act")
    heads = _int(d, "num_attention_heads", where)
    return TextConfig(
        vocab_size=_int(d, "vocab_size", where),
        hidden_size=_int(d, "hidden_size", where),
        intermediate_size=_int(d, "intermediate_size", where),
        num_layers=_int(d, "num_hidden_layers", where),
        num_heads=heads,
        num_kv_heads=_int(d, "num_key_value_heads", where, heads),
        head_dim=(
            _int(d, "head_dim", where) if d.get("head_dim") else _int(d, "hidden_size", where) // heads
        ),
        rope_theta=_rope_theta(d, 1e6, where),
        norm_eps=_float(d, "rms_norm_eps", where, 1e-6),
        tie_embeddings=bool(d.get("tie_word_embeddings", True)),
        max_position=_int(d, "max_position_embeddings", where, TextConfig.max_position),
    )


def _tower_shape(d: dict, where: str) -> dict:
    """The ViT size fields every vision config spells the same way."""
    return dict(
        hidden_size=_int(d, "hidden_size", where),
        num_layers=_int(d, "num_hidden_layers", where),
        num_heads=_int(d, "num_attention_heads", where),
        intermediate_size=_int(d, "intermediate_size", where),
        patch_size=_int(d, "patch_size", where),
        num_channels=_int(d, "num_channels", where, 3),
    )


def parse_official_aimv2(d: dict, where: str = "vision_config") -> VisionConfig:
    _require(not d.get("qkv_bias", False), where, "qkv_bias", "must be false for AIMv2")
    _require(not d.get("use_bias", False), where, "use_bias", "must be false for AIMv2")
    _require(
        _int(d, "hidden_stride", where, 2) == 2, where, "hidden_stride", "must be 2 (2x2 pixel shuffle)"
    )
    _require(
        _int(d, "temporal_patch_size", where, 1) == 1,
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
        **_tower_shape(d, where),
        pos_grid=_int(d, "image_size", where) // _int(d, "patch_size", where),
        norm_eps=_float(d, "rms_norm_eps", where, 1e-5),
        hidden_act="silu",
        use_rope2d=not d.get("disable_rope", False),
        rope_theta=_float(d, "rope_theta", where, 1e4),
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
        **_tower_shape(d, where),
        pos_grid=_pos_grid(_int(d, "num_patches", where), where),
        norm_eps=_float(d, "layer_norm_eps", where, 1e-6),
        hidden_act="gelu",
        use_rope2d=True,
        rope_theta=_float(d, "rope_theta", where, 1e4),
    )


def parse_hf_siglip2(d: dict, where: str = "config") -> VisionConfig:
    """HF Siglip2VisionModel: no RoPE, bilinear anti-aliased position resize, config's activation."""
    return VisionConfig(
        flavour="siglip2",
        **_tower_shape(d, where),
        pos_grid=_pos_grid(_int(d, "num_patches", where), where),
        norm_eps=_float(d, "layer_norm_eps", where, 1e-6),
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
        **_tower_shape(d, where),
        pos_grid=_int(d, "image_size", where) // _int(d, "patch_size", where),
        norm_eps=_float(d, "rms_norm_eps", where, 1e-5),
        hidden_act=_activation(d.get("hidden_act", "silu"), where, "hidden_act"),
        use_rope2d=False,
    )


def special_tokens(directory: pathlib.Path, text: dict) -> SpecialTokens:
    """Token ids from tokenizer.json if present, else from eos_token_id assuming the official order."""
    tok = directory / "tokenizer.json"
    if tok.exists():
        tokens = _read_json(tok).get("added_tokens", [])
        if not isinstance(tokens, list) or not all(
            isinstance(t, dict)
            and isinstance(t.get("content"), str)
            and isinstance(t.get("id"), int)
            and not isinstance(t.get("id"), bool)
            and t["id"] >= 0
            for t in tokens
        ):
            raise ConfigError(
                f"{tok}: 'added_tokens' must be a list of {{'content': str, 'id': int >= 0}}"
            )
        added = {t["content"]: t["id"] for t in tokens}
        missing = [name for name in TOKEN_NAMES.values() if name not in added]
        if missing:
            raise ConfigError(f"{tok}: special tokens {missing} not in added_tokens")
        return SpecialTokens(**{field: added[name] for field, name in TOKEN_NAMES.items()})
    eos = text.get("eos_token_id") or OFFICIAL_EOS
    eos = eos[0] if isinstance(eos, list) and eos else eos
    _require(
        isinstance(eos, int) and not isinstance(eos, bool) and eos >= OFFICIAL_EOS - 151643,
        "text_config",
        "eos_token_id",
        f"= {eos!r:.60}; expected a token id (an integer)",
    )
    return SpecialTokens.shifted(int(eos) - OFFICIAL_EOS)


def _andesvl(parse_vision: Callable[[dict], VisionConfig]):
    def parse(d: dict, directory: pathlib.Path) -> AndesVLConfig:
        where = str(directory / "config.json")
        return AndesVLConfig(
            vision=parse_vision(_section(d, "vision_config", where)),
            text=parse_qwen3(_section(d, "text_config", where)),
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
        vision=parse_hf_siglip2(_section(d, "vision_config", "config"), "vision_config")
    ),
    "aimv2_vision_model": lambda d, p: AndesVLConfig(vision=parse_hf_aimv2(d)),
}


def read_config(directory: str | pathlib.Path) -> tuple[str, AndesVLConfig]:
    """(model_type, AndesVLConfig) of a checkpoint directory."""
    directory = pathlib.Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    d = _read_json(path)
    model_type = d.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_PARSERS:
        raise ConfigError(
            f"{path}: unknown model_type {model_type!r:.80}; supported: {sorted(CONFIG_PARSERS)}"
        )
    try:
        return model_type, CONFIG_PARSERS[model_type](d, directory).validate()
    except KeyError as e:
        raise ConfigError(f"{path}: required field {e.args[0]!r} is missing") from e
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if not str(e).startswith(str(directory)) else str(e)) from e
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as e:  # validate()
        raise ConfigError(f"{path}: inconsistent config: {type(e).__name__}: {e}") from e


def _read_json(path: pathlib.Path) -> dict:
    """A JSON object from `path`, size-bounded; ConfigError naming the file and what is wrong."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size} bytes; a config is at most {MAX_CONFIG_BYTES}")
    try:
        d = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
    except RecursionError as e:
        raise ConfigError(f"{path}: JSON nested too deeply") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


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
