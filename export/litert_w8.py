"""Our deployed W8 weights -> the int8 per-channel weights of a dynamic-range `.tflite`, unchanged.

The converter's dynamic-range recipe (litert_convert QUANT_RECIPES "int8") stores each float
weight matrix as int8 [N, K] with one float32 scale per output channel (quantized dimension 0),
re-derived by absmax: scale = max|w| / 127, code = round(w / scale). A deployed linear that is
8-bit, per output channel and symmetric (compress/deploy.py) holds signed codes c [K, N] and one
fp16 step s per channel, decoding to w = c * s; the converter's absmax reproduces c and s only
where a channel's max |c| is 127 (QAT/GPTQ steps are generally not absmax). So:

  1. `float_twin(model)`: every deployed linear becomes a float Linear (a deployed embedding table
     a float Embed) holding its exact dequantized weight (c * s is one float32 product);
  2. the twin is converted with the int8 recipe;
  3. `patch_int8(tflite, weights)` finds each deployed linear's int8 tensor (same [N, K] shape and
     the converter's dequantized values within half its step of ours; every signature's tensor on
     the shared buffer) and writes our codes and steps (as float32, exact) into it.

The hybrid kernels then run int8 weights x int8 activation codes quantized per row at run time,
rescaled by our step times the row's step. The tied token table is stored twice by the converter:
float for the lookup (GATHER) and int8 per token row for the head; a deployed W8 table patches the
head copy, and the lookup copy holds its exact dequantized values. Weights that are not deployed
(float embeddings, an untied float head) keep what the converter does: int8 per output row by
absmax for the products, float for the lookup. What has no exact int8 per-channel form is an
Int8MappingError naming the linear and the field: 4/3/2-bit codes, grouped steps, zero points, a
code of -128 (TFLite's int8 weights are symmetric, [-127, 127]). Activation settings (A16, A8
static) do not change the weights; the runtime's activations are dynamic int8 per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from andesvl_jax.kernels.quant_format import dequantize_weight
from flax import nnx

from andesvl_jax.compress.deploy import DeployedLinear, deployed_linears
from andesvl_jax.compress.qlinear import replace_module
from andesvl_jax.models.layers import Embed, Linear

INT8 = 9  # tflite TensorType.INT8


class Int8MappingError(ValueError):
    """A deployed linear with no exact TFLite int8 per-channel form, or one not found in the
    converted `.tflite` (names the linear and the field)."""


@dataclasses.dataclass(frozen=True)
class Int8Weight:
    """One deployed linear as TFLite holds it: codes int8 [N, K], steps float32 [N]."""

    name: str
    codes: np.ndarray
    steps: np.ndarray


def check_int8(meta, where: str) -> None:
    """Raise Int8MappingError unless `meta` (a DeployMeta) is W8, per channel, symmetric."""
    problems = []
    if meta.bits != 8:
        problems.append(f"bits={meta.bits} (TFLite dynamic-range weights are int8)")
    if meta.group is not None:
        problems.append(f"group={meta.group} (TFLite int8 weights have one step per channel)")
    if meta.zero_point:
        problems.append("zero_point=True (TFLite int8 weights are symmetric)")
    if problems:
        raise Int8MappingError(f"{where}: no exact TFLite int8 form: " + "; ".join(problems))


def check_codes(codes: np.ndarray, where: str) -> None:
    """TFLite's int8 weights are symmetric, in [-127, 127] (its quantization spec: kernels may add
    pairs of int8 products in int16, which -128 x -128 overflows): a -128 code is an error unless
    the caller opts in (`full_range`)."""
    low = int(np.count_nonzero(codes == -128))
    if low:
        raise Int8MappingError(
            f"{where}: codes: {low} weight(s) at -128, outside TFLite's int8 weight range "
            "[-127, 127] (GPTQ and learned steps clip there); pass --int8-full-range to keep them"
        )


def int8_weights(model: nnx.Module, full_range: bool = False) -> list[Int8Weight]:
    """Every deployed linear of the LLM of `model` (an AndesVL) as an Int8Weight ([] for a float
    model), named by its path ('llm/layers/0/attn/q'). full_range: allow -128 codes."""
    out = []
    for _, names, linear in deployed_linears(model):
        name = names[0]
        if not name.startswith("llm/"):
            continue
        if len(names) != 1:
            raise Int8MappingError(
                f"{name}: stacked deployed layers ({len(names)}); deploy with separate_layers=True"
            )
        check_int8(linear.meta, name)
        codes = np.asarray(linear.signed_codes()).T
        if not full_range:
            check_codes(codes, name)
        codes = codes.astype(np.int8)
        steps = np.asarray(linear.scales[...][0], np.float32)  # per channel: rows repeat
        out.append(Int8Weight(name, np.ascontiguousarray(codes), steps))
    return out


def _float_module(linear: DeployedLinear) -> nnx.Module:
    w = np.asarray(dequantize_weight(linear.weight()), np.float32)  # [K, N] = codes * steps
    k, n = w.shape
    if linear.meta.embedding:  # the table [vocab, D] of the [D, vocab] tied-head kernel
        module = nnx.eval_shape(lambda: Embed(n, k, rngs=nnx.Rngs(0), dtype=linear.dtype))
        module.embedding = nnx.Param(w.T.copy())
        return module
    module = nnx.eval_shape(
        lambda: Linear(k, n, axes=(None, None), rngs=nnx.Rngs(0), dtype=linear.dtype)
    )
    module.kernel = nnx.Param(w)
    module.bias = linear.bias
    return module


def float_twin(model: nnx.Module) -> nnx.Module:
    """A copy of `model` with every deployed linear a float one holding its exact dequantized
    weight (the input is left untouched)."""
    twin = nnx.clone(model)
    for path, _, linear in list(deployed_linears(twin)):
        replace_module(twin, path, _float_module(linear))
    return twin


def weight_tensors(model) -> dict[int, list]:
    """buffer index -> the int8 per-channel [N, K] tensors (all signatures) stored in it."""
    out: dict[int, list] = {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if (
                t.type == INT8
                and len(t.shape) == 2
                and q is not None
                and q.scale is not None
                and len(q.scale) == t.shape[0]
                and q.quantizedDimension == 0
            ):
                out.setdefault(t.buffer, []).append(t)
    return out


def _holds(data: np.ndarray, tensor, weight: Int8Weight) -> bool:
    """Whether the converter's int8 tensor (`data`, its bytes) is `weight` re-quantized: its
    dequantized values within half its step of ours (first row first: a cheap reject)."""
    if tuple(tensor.shape) != weight.codes.shape or data.size != weight.codes.size:
        return False
    theirs = data.view(np.int8).reshape(weight.codes.shape)
    scale = np.asarray(tensor.quantization.scale, np.float32)[:, None]
    slack = scale * (0.5 + 1e-5) + 1e-12
    for rows in (slice(0, 1), slice(None)):
        ours = weight.codes[rows].astype(np.float32) * weight.steps[rows, None]
        if not (np.abs(theirs[rows] * scale[rows] - ours) <= slack[rows]).all():
            return False
    return True


def patch_int8(tflite: bytes, weights: Sequence[Int8Weight]) -> bytes:
    """`tflite` (the float twin converted with the int8 recipe) with each of `weights` written
    into its int8 tensor: our codes and steps, bit for bit (module docstring)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    tensors = weight_tensors(model)
    data = {b: np.asarray(model.buffers[b].data, np.uint8) for b in tensors}
    taken: dict[int, str] = {}
    for w in weights:
        hits = [b for b, ts in tensors.items() if _holds(data[b], ts[0], w)]
        if len(hits) != 1:
            found = "none" if not hits else f"{len(hits)} (ambiguous)"
            raise Int8MappingError(
                f"{w.name}: expected one int8 per-channel [N, K] = {list(w.codes.shape)} tensor "
                f"of the converted .tflite holding its weights, found {found}"
            )
        (b,) = hits
        if b in taken:
            raise Int8MappingError(f"{w.name} and {taken[b]} match the same .tflite weight")
        taken[b] = w.name
        model.buffers[b].data = w.codes.view(np.uint8).reshape(-1)
        for t in tensors[b]:
            t.quantization.scale = w.steps.copy()
            t.quantization.zeroPoint = np.zeros(len(w.steps), np.int64)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

