"""Model structure as frozen dataclasses, with the AndesVL presets (tiny, 0.6b, 1b, 2b, 4b).

Structure only: what the parameters are. How a run uses them (mesh, stage, data) lives in the
ml_collections files of `experiments/`. Token ids are fields, never constants, because checkpoints
with other vocabularies (e.g. the tiny official fixtures) put them elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

VisionFlavour = Literal["aimv2", "siglip2"]

# What a flavour fixes about the vision tower; everything else is a VisionConfig field.
VISION_FLAVOURS: dict[str, dict[str, str | bool]] = {
    # AIMv2: RMSNorm, SwiGLU MLP, no biases except the patch-embedding conv, RMSNorm after the patch embed.
    "aimv2": {"norm": "rms", "mlp": "swiglu", "bias": False, "patch_norm": True},
    # SigLIP2: LayerNorm with bias, GELU MLP, biases everywhere, no norm after the patch embed.
    "siglip2": {"norm": "layer", "mlp": "gelu", "bias": True, "patch_norm": False},
}


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """NaViT vision encoder (AIMv2 or SigLIP2 flavour) with optional 2D-RoPE."""

    flavour: VisionFlavour = "aimv2"
    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 8
    intermediate_size: int = 2816
    patch_size: int = 14
    num_channels: int = 3
    pos_grid: int = 32  # learned absolute position table is pos_grid x pos_grid, resized per image
    norm_eps: float = 1e-5
    # MLP activation: 'silu' (AIMv2 SwiGLU), 'gelu' (exact erf) or 'gelu_tanh'.
    hidden_act: str = "silu"
    use_rope2d: bool = True
    rope_theta: float = 10000.0
    use_abs_pos: bool = True
    # How the learned table is resized to an image's patch grid: 'bicubic' (AndesVL, PyTorch
    # semantics) or 'bilinear_aa' (HF SigLIP2: bilinear with anti-aliasing).
    pos_interpolation: str = "bicubic"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def norm(self) -> str:
        return str(VISION_FLAVOURS[self.flavour]["norm"])

    @property
    def mlp(self) -> str:
        return str(VISION_FLAVOURS[self.flavour]["mlp"])

    @property
    def bias(self) -> bool:
        return bool(VISION_FLAVOURS[self.flavour]["bias"])

    @property
    def patch_norm(self) -> bool:
        return bool(VISION_FLAVOURS[self.flavour]["patch_norm"])

    @property
    def patch_dim(self) -> int:
        return self.num_channels * self.patch_size * self.patch_size

    def validate(self) -> None:
        if self.flavour not in VISION_FLAVOURS:
            raise ValueError(
                f"vision flavour {self.flavour!r} unknown; expected one of {sorted(VISION_FLAVOURS)}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"vision hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}"
            )
        if self.use_rope2d and self.head_dim % 4:
            raise ValueError(f"2D-RoPE needs vision head_dim divisible by 4, got {self.head_dim}")


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Qwen3 decoder."""

    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_layers: int = 28
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 1_000_000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    max_position: int = 40960  # Qwen3 max_position_embeddings: longer rows are an error

    def validate(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads {self.num_heads} not divisible by num_kv_heads {self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"text head_dim must be even for RoPE, got {self.head_dim}")


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Token ids the model and the data pipeline use (defaults: the Qwen3 vocabulary)."""

    pad: int = 151643  # <|endoftext|>
    im_start: int = 151644
    im_end: int = 151645  # eos
    img_start: int = 151652  # <img>
    img_end: int = 151653  # </img>
    image_pad: int = 151654  # <|vision_pad|>, overwritten by image embeddings
    think_start: int = 151667
    think_end: int = 151668
    box_start: int = 151648
    box_end: int = 151649
    ref_start: int = 151646
    ref_end: int = 151647

    @classmethod
    def shifted(cls, offset: int) -> SpecialTokens:
        """The same tokens at `official id + offset` (tiny vocabularies keep the official order)."""
        return cls(**{f.name: getattr(cls(), f.name) + offset for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class AndesVLConfig:
    """The whole model: vision tower -> pixel shuffle -> MLP projector -> Qwen3, plus how to run it."""

    vision: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    tokens: SpecialTokens = SpecialTokens()
    pixel_shuffle: bool = True
    shuffle_factor: int = 2  # pixel shuffle concatenates factor x factor neighbouring patches
    # Execution options (do not change the parameters):
    scan_layers: bool = True
    remat: str = "none"  # see models/remat.py
    param_dtype: str = "float32"
    dtype: str = "float32"  # compute dtype
    # A `kernels.dispatch.KERNELS["attention"]` impl, or "auto": the reference at one-tile sizes,
    # else the best impl validated on the backend, never one materialising [t, s] (docs/kernels.md).
    attention_impl: str = "auto"

    @property
    def tokens_per_patch_group(self) -> int:
        return self.shuffle_factor**2 if self.pixel_shuffle else 1

    @property
    def projector_in(self) -> int:
        return self.vision.hidden_size * self.tokens_per_patch_group

    def validate(self) -> AndesVLConfig:
        self.vision.validate()
        self.text.validate()
        if self.shuffle_factor != 2:
            raise ValueError(
                "only 2x2 pixel shuffle is supported: patches are packed in 2x2-contiguous order"
            )
        return self

    def replace(self, **kw) -> AndesVLConfig:
        return dataclasses.replace(self, **kw)


QWEN3 = {
    "0.6b": TextConfig(),
    "1.7b": TextConfig(
        hidden_size=2048, intermediate_size=6144, num_layers=28, num_heads=16, num_kv_heads=8
    ),
    "4b": TextConfig(
        hidden_size=2560, intermediate_size=9728, num_layers=36, num_heads=32, num_kv_heads=8
    ),
}
SIGLIP2_BASE16 = VisionConfig(
    flavour="siglip2",
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    intermediate_size=3072,
    patch_size=16,
    pos_grid=16,
    norm_eps=1e-6,
    hidden_act="gelu",
)
AIMV2_LARGE14 = VisionConfig()

TINY_TEXT = TextConfig(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
)
TINY_VISION = VisionConfig(
    hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, pos_grid=4
)

PRESETS: dict[str, AndesVLConfig] = {
    "tiny": AndesVLConfig(
        vision=TINY_VISION, text=TINY_TEXT, tokens=SpecialTokens.shifted(-151163)
    ),
    "0.6b": AndesVLConfig(vision=SIGLIP2_BASE16, text=QWEN3["0.6b"]),
    "1b": AndesVLConfig(vision=AIMV2_LARGE14, text=QWEN3["0.6b"]),
    "2b": AndesVLConfig(vision=AIMV2_LARGE14, text=QWEN3["1.7b"]),
    "4b": AndesVLConfig(vision=AIMV2_LARGE14, text=QWEN3["4b"]),
}

# Published total parameter counts (HF model cards), checked by tests/test_presets.py.
PUBLISHED_PARAMS = {"0.6b": 0.695e9, "1b": 0.927e9, "2b": 2.055e9, "4b": 4.360e9}


def replace_fields(cfg, overrides: Mapping[str, Any], where: str = ""):
    """`cfg` (a config dataclass) with `overrides` applied; a mapping for a nested dataclass
    field (e.g. `vision={"use_rope2d": False}`) changes only the fields it names."""
    known = [f.name for f in dataclasses.fields(cfg)]
    unknown = [k for k in overrides if k not in known]
    if unknown:
        names = ", ".join(f"{where}{k}" for k in unknown)
        raise ValueError(
            f"unknown {type(cfg).__name__} field(s) {names}; expected one of {known}"
        )
    changes = {}
    for key, value in overrides.items():
        current = getattr(cfg, key)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            value = replace_fields(current, value, f"{where}{key}.")
        changes[key] = value
    return dataclasses.replace(cfg, **changes)


def get_preset(name: str, **overrides) -> AndesVLConfig:
    """A preset by name, with overrides: top-level fields (`scan_layers=False`) and nested ones as
    mappings (`vision={"use_rope2d": False}`, `text={"num_layers": 4}`)."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    try:
        return replace_fields(PRESETS[name], overrides).validate()
    except ValueError as e:
        raise ValueError(f"get_preset({name!r}): {e}") from None
