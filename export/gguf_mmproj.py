"""Our vision tower + projector -> OUTDIR/mmproj.gguf, a libmtmd (llama.cpp) vision projector.

No llama.cpp graph is AndesVL's; each vision flavour goes to the graph that matches it best
(GRAPHS, a registry flavour -> MmprojGraph; DESIGN.md §10, docs/export.md):
  siglip2 -> `kimik25`: exact but for its GELUs, which are tanh (ggml's fp16 table on CPU) where the
             official tower and our projector use erf;
  aimv2   -> `glm4v`: the tower exactly, the projector by an exact-in-exact-arithmetic construction
             (export/gguf_vision_tensors.py).
Anything a graph cannot express is an `MmprojError` naming the config field, raised before a byte
is written. libmtmd brackets each image with marker strings hard-coded per graph; the LLM GGUF gives
our `<img>` / `</img>` ids those strings (`markers`), so llama.cpp's image prompt is ours.
Metadata: `general.type = mmproj`, the `clip.*` keys of llama.cpp's mtmd/clip-impl.h.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import gguf
import numpy as np
from andesvl_jax.export.gguf_file import finish
from andesvl_jax.export.gguf_vision_tensors import (
    PIXEL_MEAN,
    PIXEL_STD,
    glm4v_tensors,
    kimik25_tensors,
)
from flax import nnx

from andesvl_jax.compress.deploy import DeployedLinear
from andesvl_jax.compress.qlinear import QuantLinear
from andesvl_jax.data.preprocess import FLAVOUR_NORMALISATION

Q = gguf.GGMLQuantizationType
MMPROJ_FILE = "mmproj.gguf"
ROPE_THETA = 10000.0  # both graphs hard-code their vision RoPE base
MARKERS = ("<|begin_of_image|>", "<|end_of_image|>")  # kimik25 takes these too when present


class MmprojError(ValueError):
    """The vision tower has a feature no libmtmd graph written here expresses (names the field)."""


@dataclasses.dataclass(frozen=True)
class MmprojGraph:
    projector_type: str  # clip.projector_type
    tensors: Callable  # model -> {gguf name: (numpy array, GGML type)}
    activations: dict[str, str]  # our vision.hidden_act -> the clip.use_* key that selects it
    merge_key: str  # the key that carries the 2x2 merge
    needs_abs_pos: bool
    pixel_normalisation: Callable  # flavour -> (mean, std) libmtmd applies to pixels / 255


GRAPHS: dict[str, MmprojGraph] = {
    "siglip2": MmprojGraph(
        "kimik25",
        kimik25_tensors,
        {"gelu": "clip.use_gelu", "gelu_tanh": "clip.use_gelu", "silu": "clip.use_silu"},
        "clip.vision.projector.scale_factor",
        needs_abs_pos=True,
        pixel_normalisation=lambda flavour: (PIXEL_MEAN, PIXEL_STD),  # folded into the conv
    ),
    "aimv2": MmprojGraph(
        "glm4v",
        glm4v_tensors,
        {"silu": "clip.use_silu"},
        "clip.vision.spatial_merge_size",
        needs_abs_pos=False,
        pixel_normalisation=FLAVOUR_NORMALISATION.__getitem__,
    ),
}


def has_vision(model) -> bool:
    return getattr(model, "vision", None) is not None


def mmproj_graph(model) -> MmprojGraph:
    """The graph for `model`'s tower, after checking every field it must have (MmprojError)."""
    cfg, v = model.cfg, model.cfg.vision
    hint = "; export without it: --no-mmproj"
    if v.flavour not in GRAPHS:
        raise MmprojError(
            f"vision.flavour {v.flavour!r}: no mmproj graph (known: {sorted(GRAPHS)})"
        )
    graph = GRAPHS[v.flavour]
    checks = [
        (cfg.pixel_shuffle, "pixel_shuffle", "must be true (the graph merges 2x2 patches)"),
        (v.use_rope2d, "vision.use_rope2d", f"must be true (the {graph.projector_type} graph "
         "always applies its 2-D RoPE)"),
        (v.rope_theta == ROPE_THETA, "vision.rope_theta",
         f"= {v.rope_theta}; llama.cpp hard-codes {ROPE_THETA:g}"),
        (v.pos_interpolation == "bicubic", "vision.pos_interpolation",
         f"= {v.pos_interpolation!r}; the graph resizes positions bicubically"),
        (v.use_abs_pos or not graph.needs_abs_pos, "vision.use_abs_pos",
         f"must be true (the {graph.projector_type} graph requires the position table)"),
        (v.hidden_act in graph.activations, "vision.hidden_act",
         f"= {v.hidden_act!r}; the {graph.projector_type} graph offers {sorted(graph.activations)}"),
        (v.num_channels == 3, "vision.num_channels", f"= {v.num_channels}; images are RGB"),
    ]  # fmt: skip
    for ok, field, msg in checks:
        if not ok:
            raise MmprojError(f"{field} {msg}{hint}")
    for part in ("vision", "projector"):
        for path, module in nnx.iter_modules(getattr(model, part)):
            if isinstance(module, DeployedLinear | QuantLinear):
                where = ".".join(map(str, (part, *path)))
                raise MmprojError(
                    f"{where}: a quantized linear; mmproj.gguf is written from float weights "
                    f"(quantize the LLM only, e.g. recipe w4a16_g32){hint}"
                )
    return graph


def marker_strings(tokens) -> dict[int, str]:
    """SpecialTokens -> {token id: the string libmtmd brackets an image with} (<img>, </img>)."""
    return dict(zip((tokens.img_start, tokens.img_end), MARKERS, strict=True))


def _add_keys(writer: gguf.GGUFWriter, model, graph: MmprojGraph, name: str) -> None:
    v = model.cfg.vision
    mean, std = graph.pixel_normalisation(v.flavour)
    writer.add_string("general.type", "mmproj")
    writer.add_name(name or "andesvl-jax mmproj")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)  # BF16/F16 only for the conv kernels
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", graph.projector_type)
    writer.add_bool(graph.activations[v.hidden_act], True)
    writer.add_uint32("clip.vision.embedding_length", v.hidden_size)
    writer.add_uint32("clip.vision.feed_forward_length", v.intermediate_size)
    writer.add_uint32("clip.vision.block_count", v.num_layers)
    writer.add_uint32("clip.vision.attention.head_count", v.num_heads)
    writer.add_uint32("clip.vision.projection_dim", model.cfg.text.hidden_size)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", v.norm_eps)
    writer.add_uint32("clip.vision.image_size", v.pos_grid * v.patch_size)
    writer.add_uint32("clip.vision.patch_size", v.patch_size)
    writer.add_uint32(graph.merge_key, model.cfg.shuffle_factor)
    writer.add_array("clip.vision.image_mean", [float(m) for m in mean])
    writer.add_array("clip.vision.image_std", [float(s) for s in std])


def write_mmproj(model, path: str | pathlib.Path, name: str = "") -> MmprojGraph:
    """Write `model`'s vision tower + projector to `path`; returns the graph used."""
    graph = mmproj_graph(model)
    tensors = graph.tensors(model)
    writer = gguf.GGUFWriter(str(path), "clip")
    _add_keys(writer, model, graph, name)
    for tensor_name, (data, dtype) in tensors.items():
        data = np.ascontiguousarray(data, np.float32)
        if dtype == Q.F32:
            writer.add_tensor(tensor_name, data)
        elif dtype == Q.F16:
            writer.add_tensor(tensor_name, data.astype(np.float16))
        else:
            writer.add_tensor(tensor_name, gguf.quants.quantize(data, dtype), raw_dtype=dtype)
    finish(writer)
    return graph
