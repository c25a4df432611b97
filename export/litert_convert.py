"""JAX -> one `.tflite` with named signatures, through jax2tf and a SavedModel.

The recipe that LiteRT-LM accepts (DESIGN.md §10): a `tf.Module` holding the weights as
`tf.Variable`s (shared by every signature, stored once), one `tf.function(jax2tf.convert(...,
with_gradient=False))` per signature with named `TensorSpec`s, `tf.saved_model.save`, then
`TFLiteConverter.from_saved_model(dir, signature_keys=...)` (from_concrete_functions writes no
SignatureDefs). Shapes are static: the converter rejects the dynamic gather/slice ops jax2tf emits
for symbolic shapes.

Weight quantization (QUANT_RECIPES): `int8` is the converter's dynamic-range recipe (per-channel
symmetric int8 weights); the others are `ai_edge_quantizer` recipes applied to the float flatbuffer
(`int4`: 4-bit weights in blocks of 32).
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from collections.abc import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A named static-shape input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name


@dataclasses.dataclass(frozen=True)
class Signature:
    """fn(weights, *inputs) -> tuple of outputs, in `outputs` order."""

    name: str
    fn: Callable
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]


def _no_quant(tflite: bytes) -> bytes:
    return tflite


def _ai_edge_quantize(recipe_name: str) -> Callable[[bytes], bytes]:
    def quantize(tflite: bytes) -> bytes:
        try:
            from ai_edge_quantizer import quantizer, recipe
        except ImportError as e:
            raise ValueError(
                f"--quant {recipe_name}: needs the `ai-edge-quantizer` package ({e})"
            ) from None
        q = quantizer.Quantizer(tflite, getattr(recipe, recipe_name)())
        return bytes(q.quantize().quantized_model)

    return quantize


# name -> (converter dynamic-range flag, post-conversion quantizer). Dynamic recipes also quantize
# the activations of each product on the fly (int8 codes per row); weight-only ones dequantize the
# weights and multiply in float.
QUANT_RECIPES: dict[str, tuple[bool, Callable[[bytes], bytes]]] = {
    "none": (False, _no_quant),
    "int8": (True, _no_quant),  # the converter's dynamic range: per-channel int8 weights
    "int8-weight-only": (False, _ai_edge_quantize("weight_only_wi8_afp32")),
    "int4": (False, _ai_edge_quantize("dynamic_wi4b32_afp32")),  # blocks of 32, like our W4 g32
    "int4-channel": (False, _ai_edge_quantize("dynamic_wi4c_afp32")),
    "int4-weight-only": (False, _ai_edge_quantize("weight_only_wi4_afp32")),
}


def _named(converted, module, outputs: tuple[str, ...]):
    """The TF function body: the converted JAX function on the module's weights, outputs named."""

    def call(*args):
        return dict(zip(outputs, converted(module.weights, *args), strict=True))

    return call


def save_signatures(
    weights: Sequence[np.ndarray], signatures: Sequence[Signature], directory: str | pathlib.Path
) -> None:
    """Write a SavedModel at `directory`: the weights as shared tf.Variables, one named signature
    per `Signature` (jax2tf, static shapes)."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    module = tf.Module()
    module.weights = [tf.Variable(w, trainable=False, name=f"w{i}") for i, w in enumerate(weights)]
    concrete = {}
    for sig in signatures:
        converted = jax2tf.convert(
            sig.fn, with_gradient=False, native_serialization_platforms=("cpu",)
        )
        specs = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in sig.inputs]
        fn = tf.function(_named(converted, module, sig.outputs), input_signature=specs, autograph=False)
        setattr(module, f"sig_{sig.name}", fn)
        concrete[sig.name] = fn.get_concrete_function()
    tf.saved_model.save(module, str(directory), signatures=concrete)


def convert_saved_model(directory: str | pathlib.Path, names: Sequence[str], quant: str) -> bytes:
    """SavedModel -> tflite bytes with the signatures `names`, weights quantized by `quant`."""
    if quant not in QUANT_RECIPES:
        raise ValueError(f"unknown quant {quant!r}; expected one of {sorted(QUANT_RECIPES)}")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(directory), signature_keys=list(names))
    optimize, post = QUANT_RECIPES[quant]
    if optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return post(converter.convert())


def to_tflite(
    weights: Sequence[np.ndarray],
    signatures: Sequence[Signature],
    *,
    quant: str = "none",
    workdir: str | pathlib.Path | None = None,
) -> bytes:
    """Convert: weights (list of arrays, shared) + signatures -> tflite flatbuffer bytes."""
    if quant not in QUANT_RECIPES:
        raise ValueError(f"unknown quant {quant!r}; expected one of {sorted(QUANT_RECIPES)}")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="litert-savedmodel-") as tmp:
        save_signatures(weights, signatures, tmp)
        return convert_saved_model(tmp, [s.name for s in signatures], quant)
