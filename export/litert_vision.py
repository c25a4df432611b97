"""The vision tower as LiteRT sections: `tf_lite_vision_encoder` and `tf_lite_vision_adapter`.

Static shapes, so one export serves one patch grid (grid_h x grid_w patches, both even: the 2x2
pixel shuffle), i.e. one preprocessed image size (our canvas, data/preprocess.py):
  encoder  images [1, N, C*P*P] float32 (patch vectors in our 2x2-block order, data/patches.py),
           positions_xy [1, N, 2] int32 (patch row, column) -> features [1, N, d_vit];
  adapter  features [1, N, d_vit] -> embeddings [1, N/4, d_llm] (pixel shuffle + MLP projector).
Both run our own modules (models/vit.py, models/projector.py). `vision_errors` runs them in the
ai_edge_litert interpreter against our tower.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from andesvl_jax.export.litert_convert import Signature, TensorSpec, to_tflite
from flax import nnx

from andesvl_jax.data.patches import PackedImages, pack_images

ENCODER, ADAPTER = "tf_lite_vision_encoder", "tf_lite_vision_adapter"
SIGNATURE = "serving_default"


def _check_grid(grid_h: int, grid_w: int, group: int) -> None:
    if grid_h % 2 or grid_w % 2 or grid_h < 2 or grid_w < 2:
        raise ValueError(f"vision grid {grid_h}x{grid_w}: both sides must be even (2x2 shuffle)")
    if (grid_h * grid_w) % group:
        raise ValueError(f"vision grid {grid_h}x{grid_w} not a multiple of the shuffle group")


def _split(module):
    graphdef, state = nnx.split(module)
    leaves, treedef = jax.tree.flatten(state)
    return graphdef, treedef, [np.asarray(x) for x in leaves]


def encoder_signature(model, grid_h: int, grid_w: int):
    """(weights, Signature) of the vision encoder for one grid."""
    cfg = model.cfg.vision
    n = grid_h * grid_w
    graphdef, treedef, weights = _split(model.vision)

    def encode(w, patches, positions_xy):
        tower = nnx.merge(graphdef, jax.tree.unflatten(treedef, list(w)))
        ones = jnp.ones((1, n), jnp.int32)
        images = PackedImages(
            patches, ones, positions_xy[..., 0], positions_xy[..., 1], ones * grid_h, ones * grid_w
        )
        return (tower(images),)

    inputs = (
        TensorSpec("images", (1, n, cfg.patch_dim), "float32"),
        TensorSpec("positions_xy", (1, n, 2), "int32"),
    )
    return weights, Signature(SIGNATURE, encode, inputs, ("features",))


def adapter_signature(model, grid_h: int, grid_w: int):
    """(weights, Signature) of pixel shuffle + projector for one grid."""
    n = grid_h * grid_w
    graphdef, treedef, weights = _split(model.projector)

    def adapt(w, features):
        projector = nnx.merge(graphdef, jax.tree.unflatten(treedef, list(w)))
        tokens, _ = projector(features, jnp.ones((1, n), jnp.int32))
        return (tokens,)

    inputs = (TensorSpec("features", (1, n, model.cfg.vision.hidden_size), "float32"),)
    return weights, Signature(SIGNATURE, adapt, inputs, ("embeddings",))


def vision_tflites(model, grid_h: int, grid_w: int, quant: str = "none") -> dict[str, bytes]:
    """{tf_lite_vision_encoder: bytes, tf_lite_vision_adapter: bytes} for one patch grid."""
    _check_grid(grid_h, grid_w, model.cfg.tokens_per_patch_group)
    out = {}
    for section, build in ((ENCODER, encoder_signature), (ADAPTER, adapter_signature)):
        weights, sig = build(model, grid_h, grid_w)
        out[section] = to_tflite(weights, [sig], quant=quant)
    return out


def image_inputs(image: np.ndarray, patch_size: int) -> tuple[PackedImages, dict[str, np.ndarray]]:
    """One preprocessed image [C, H, W] -> (our PackedImages, the encoder's named inputs)."""
    packed = pack_images([[image]], patch_size)
    xy = np.stack([packed.rows, packed.cols], axis=-1).astype(np.int32)
    return packed, {"images": packed.patches.astype(np.float32), "positions_xy": xy}


def _run(tflite: bytes, **inputs) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=tflite).get_signature_runner(SIGNATURE)
    return next(iter(runner(**inputs).values()))


def vision_errors(model, tflites: dict[str, bytes], image: np.ndarray) -> dict[str, float]:
    """Max abs and relative (to max |ours|) errors of the exported encoder, adapter and the two
    chained against our tower, for one image [C, H, W] of the exported size."""
    packed, inputs = image_inputs(image, model.cfg.vision.patch_size)
    ours_features = np.asarray(model.vision(packed))
    ours_tokens = np.asarray(model.projector(ours_features, packed.segment_ids)[0])
    features = _run(tflites[ENCODER], **inputs)
    tokens_from_ours = _run(tflites[ADAPTER], features=ours_features)
    tokens = _run(tflites[ADAPTER], features=features)

    def errs(got, want):
        a = float(np.abs(got - want).max())
        return a, a / float(np.abs(want).max())

    out = {}
    for name, (got, want) in {
        "encoder": (features, ours_features),
        "adapter": (tokens_from_ours, ours_tokens),
        "tower": (tokens, ours_tokens),
    }.items():
        out[f"{name}_max_abs"], out[f"{name}_max_rel"] = errs(got, want)
    return out
