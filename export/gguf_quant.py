"""Our deployed integer weights -> GGUF Q8_0 / Q4_0 blocks with the codes and fp16 steps unchanged.

A deployed symmetric linear (compress/deploy.py) stores codes q = c + 2^(b-1) (c the signed code)
and one fp16 step s per group of K rows; it decodes to w = c * s. GGUF Q8_0 / Q4_0 hold rows of
blocks of 32 weights: an fp16 d and 32 int8 c (Q8_0) or 32 nibbles q = c + 8 (Q4_0, byte j =
q[j] | q[j+16] << 4); they decode to d * c. So with d = s, each block is our group of 32 exactly,
and the dequantized GGUF weight equals our deployed weight bit for bit (both are one float32
product of the same two numbers). Groups of 64/128 and per-channel steps repeat the step over their
32-blocks (also exact). What cannot map exactly, each an error naming the field:
  * `zero_point` (asymmetric codes): Q4_1/Q8_1 store d and a float offset m = -z*s, rounded to
    fp16 — not our integer zero point;
  * `bits` other than 4 and 8 (W2/W3 have no 32-block GGUF type with a bare scale);
  * `group` not a multiple of 32 (a block has one step);
  * `act_bits = 8` (static int8 activation codes): llama.cpp has no per-tensor static activation
    step. A16 models are written (their weights exactly): llama.cpp does not reproduce our int16
    activation codes; its quantized dot products round activations to Q8_0 (int8 per 32, dynamic)
    instead, so runtime logits differ from our deployed forward by that rounding (measured in
    docs/export.md).
"""

from __future__ import annotations

import gguf
import numpy as np
from andesvl_jax.kernels.quant_format import unpack_weight_codes

from andesvl_jax.compress.deploy import DeployedLinear

Q = gguf.GGMLQuantizationType
BLOCK = 32
TYPES = {8: Q.Q8_0, 4: Q.Q4_0}  # deployed bits -> the GGUF type holding them exactly


class QuantMappingError(ValueError):
    """A deployed linear whose codes/steps have no exact GGUF form (names the field)."""


def check_exact(meta, where: str) -> None:
    """Raise QuantMappingError unless `meta` (a DeployMeta) maps exactly to Q8_0/Q4_0."""
    problems = []
    if meta.zero_point:
        problems.append("zero_point=True (asymmetric codes have no exact Q4_1/Q8_1 form)")
    if meta.bits not in TYPES:
        problems.append(f"bits={meta.bits} (exact GGUF types: {sorted(TYPES)} bits)")
    if meta.pack_group % BLOCK or meta.in_features % BLOCK:
        problems.append(
            f"group={meta.group}, in_features={meta.in_features} (GGUF blocks are {BLOCK} wide)"
        )
    if meta.act_bits == 8:
        problems.append("act_bits=8 (static int8 activations; export a w*a16 or weight-only model)")
    if problems:
        raise QuantMappingError(f"{where}: no exact GGUF form: " + "; ".join(problems))


def codes_and_steps(linear: DeployedLinear) -> tuple[np.ndarray, np.ndarray]:
    """Signed codes int32 [N, K] and fp16 steps [N, K/32] of one deployed linear (GGUF row order)."""
    meta, pw = linear.meta, linear.weight()
    k = meta.in_features
    codes = np.asarray(unpack_weight_codes(pw))[:k] - (1 << (meta.bits - 1))
    steps = np.repeat(np.asarray(pw.scales, np.float16), meta.pack_group // BLOCK, axis=0)
    return codes.T.astype(np.int32), steps[: k // BLOCK].T


def pack_blocks(codes: np.ndarray, steps: np.ndarray, bits: int) -> np.ndarray:
    """Raw Q8_0 / Q4_0 bytes uint8 [N, K/32 * block bytes] from signed codes [N, K] and fp16
    steps [N, K/32]."""
    n, k = codes.shape
    c = codes.reshape(n, k // BLOCK, BLOCK)
    d = steps.astype(np.float16).reshape(n, k // BLOCK, 1).view(np.uint8)  # 2 bytes per block
    if bits == 8:
        qs = c.astype(np.int8).view(np.uint8)
    else:
        q = (c + 8).astype(np.uint8)
        qs = q[..., : BLOCK // 2] | (q[..., BLOCK // 2 :] << 4)
    return np.concatenate([d, qs], axis=-1).reshape(n, -1)


def deployed_blocks(linear: DeployedLinear, where: str) -> tuple[np.ndarray, Q]:
    """(raw block bytes [N, row bytes], GGUF type) of a deployed linear (module docstring)."""
    meta = linear.meta
    check_exact(meta, where)
    codes, steps = codes_and_steps(linear)
    return pack_blocks(codes, steps, meta.bits), TYPES[meta.bits]
