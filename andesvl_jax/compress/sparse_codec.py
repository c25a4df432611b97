"""The stored form of one pruned, quantized kernel (docs/formats.md §6): coded mask + kept codes +
fp16 steps, every field a byte string, so bits per weight are counted from what is stored.

Mask: the kernel [K, N] is read column by column (each output's K weights in order) and cut into
blocks of B weights. A block with c kept weights is stored as its rank among the C(B, c) subsets
(combinatorial number system: Σ C(i, j) over its kept positions i, j = 1..c), in
ceil(log2 C(B, c)) bits. N:M patterns use B = m and a fixed c = n (1:4 → 2 bits, 2:4 → 3, 2:8 → 5
per block: the index of the kept weight(s)); unstructured masks use B = 64 and also store each
block's count c in 7 bits — about 0.87 bits per weight at 75 % sparsity, under 1 bit per weight.
Values: the kept weights' signed b-bit codes c ∈ [−2^(b−1), 2^(b−1)−1] as offset-binary b-bit
fields, in the same order. Steps: fp16 [K / group, N]; a weight is code · step. Bit strings are
MSB-first, packed by `np.packbits`.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from andesvl_jax.compress.masks import Pattern, check_mask, parse_pattern

UNSTRUCTURED_BLOCK = 64
COUNT_BITS = 7  # 0..64 kept per unstructured block
SCALE_BITS = 16
_C = np.array(
    [
        [math.comb(i, j) for j in range(UNSTRUCTURED_BLOCK + 1)]
        for i in range(UNSTRUCTURED_BLOCK + 1)
    ],
    dtype=np.uint64,
)


class CodecError(ValueError):
    """A packed tensor that cannot be decoded; the message names the tensor."""


_W = np.array(
    [[max(int(c) - 1, 0).bit_length() for c in row] for row in _C], dtype=np.int64
)  # ceil(log2 C(i, j)); 0 where C <= 1


def rank_width(b: int, c) -> np.ndarray:
    """Bits of the rank of a c-of-b subset: ceil(log2 C(b, c)) (0 when there is one subset)."""
    return _W[b, np.asarray(c, np.int64)]


def pack_fields(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """uint8 bytes of unsigned `values` [n], each in `widths` [n] bits, MSB-first, concatenated."""
    values = np.asarray(values, np.uint64).reshape(-1)
    widths = np.broadcast_to(np.asarray(widths, np.int64), values.shape)
    if values.size == 0 or widths.max(initial=0) == 0:
        return np.zeros(0, np.uint8)
    t = np.arange(widths.max())
    shift = (widths[:, None] - 1 - t[None, :]).clip(0).astype(np.uint64)
    bits = ((values[:, None] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits[t[None, :] < widths[:, None]])


def unpack_fields(data: np.ndarray, widths: np.ndarray, where: str = "") -> np.ndarray:
    """Inverse of `pack_fields`: uint64 [n] from the bytes and the same widths."""
    widths = np.asarray(widths, np.int64).reshape(-1)
    total = int(widths.sum())
    if len(data) != (total + 7) // 8:
        raise CodecError(
            f"{where}: {len(data)} bytes, expected {(total + 7) // 8} for {total} bits"
        )
    if total == 0:
        return np.zeros(widths.shape, np.uint64)
    bits = np.unpackbits(np.asarray(data, np.uint8))[:total].astype(np.uint64)
    starts = np.cumsum(widths) - widths
    t = np.arange(widths.max())
    valid = t[None, :] < widths[:, None]
    idx = np.where(valid, starts[:, None] + t[None, :], 0)
    shift = (widths[:, None] - 1 - t[None, :]).clip(0).astype(np.uint64)
    return np.sum(np.where(valid, bits[idx] << shift, np.uint64(0)), axis=1, dtype=np.uint64)


def subset_ranks(blocks: np.ndarray) -> np.ndarray:
    """Combinatorial rank of each bool block [nb, B] among subsets of its size."""
    j = np.cumsum(blocks, axis=1)
    i = np.broadcast_to(np.arange(blocks.shape[1]), blocks.shape)
    return np.sum(np.where(blocks, _C[i, j], np.uint64(0)), axis=1, dtype=np.uint64)


def subsets_of_ranks(ranks: np.ndarray, counts: np.ndarray, b: int) -> np.ndarray:
    """bool [nb, b] blocks from their ranks and sizes (inverse of `subset_ranks`)."""
    r = np.asarray(ranks, np.uint64).copy()
    c = np.asarray(counts, np.int64).copy()
    out = np.zeros((len(r), b), bool)
    for i in range(b - 1, -1, -1):
        t = _C[i, c]
        take = (c > 0) & (t <= r)
        out[:, i] = take
        r -= np.where(take, t, np.uint64(0))
        c -= take
    return out


@dataclasses.dataclass
class PackedSparse:
    """One stored kernel: `fields` (name -> uint8 bytes or fp16 steps) + what decodes them."""

    pattern: str  # '1:4' | '2:4' | '2:8' | 'unstructured'
    shape: tuple[int, int]  # (K, N)
    bits: int
    group: int
    kept: int
    fields: dict[str, np.ndarray]

    @property
    def stored_bytes(self) -> int:
        return sum(a.nbytes for a in self.fields.values())

    def bits_per_weight(self) -> float:
        return 8 * self.stored_bytes / (self.shape[0] * self.shape[1])

    def meta(self) -> dict:
        return {
            "pattern": self.pattern,
            "shape": list(self.shape),
            "bits": self.bits,
            "group": self.group,
            "kept": self.kept,
            "crc32": {
                k: zlib.crc32(np.ascontiguousarray(v).tobytes()) for k, v in self.fields.items()
            },
        }


def _block_view(mask: np.ndarray, pattern: Pattern) -> tuple[np.ndarray, int]:
    flat = np.ascontiguousarray(mask.T).reshape(-1)  # column by column
    b = pattern.m if pattern.kind == "nm" else UNSTRUCTURED_BLOCK
    pad = -flat.size % b
    return np.concatenate([flat, np.zeros(pad, bool)]).reshape(-1, b), b


def encode(
    codes: np.ndarray, steps: np.ndarray, mask: np.ndarray, pattern, bits: int, where: str
) -> PackedSparse:
    """codes: signed ints [K, N] (0 where pruned), steps [K / group, N], mask bool [K, N]."""
    pattern = pattern if isinstance(pattern, Pattern) else parse_pattern(pattern, where)
    k, n = codes.shape
    check_mask(mask, codes.shape, pattern, where)
    if np.any(codes[~mask] != 0):
        raise ValueError(f"{where}: pruned weights must have code 0")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    kept = codes.T[mask.T]
    if kept.size and (kept.min() < lo or kept.max() > hi):
        raise ValueError(f"{where}: codes outside the {bits}-bit range [{lo}, {hi}]")
    if k % steps.shape[0]:
        raise ValueError(f"{where}: {steps.shape[0]} step rows do not divide K={k}")
    blocks, b = _block_view(mask, pattern)
    counts = blocks.sum(1)
    fields = {}
    if pattern.kind == "unstructured":
        fields["counts"] = pack_fields(counts, COUNT_BITS)
    fields["mask"] = pack_fields(subset_ranks(blocks), rank_width(b, counts))
    fields["values"] = pack_fields((kept - lo).astype(np.uint64), bits)
    fields["scales"] = np.asarray(steps, np.float16)
    name = pattern.name if pattern.kind == "nm" else "unstructured"
    return PackedSparse(name, (k, n), bits, k // steps.shape[0], int(kept.size), fields)


def decode(p: PackedSparse, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (signed codes int32 [K, N], fp16 steps [K / group, N], bool mask [K, N])."""
    k, n = p.shape
    if p.pattern == "unstructured":
        b, nb = UNSTRUCTURED_BLOCK, -(-k * n // UNSTRUCTURED_BLOCK)
        counts = unpack_fields(p.fields["counts"], np.full(nb, COUNT_BITS), f"{where}.counts")
        counts = counts.astype(np.int64)
        if counts.max(initial=0) > b:
            raise CodecError(f"{where}.counts: a block count exceeds {b}")
    else:
        pattern = parse_pattern(p.pattern, where)
        b, nb = pattern.m, k * n // pattern.m
        counts = np.full(nb, pattern.n, np.int64)
    if int(counts.sum()) != p.kept:
        raise CodecError(
            f"{where}.counts: {int(counts.sum())} kept weights, metadata says {p.kept}"
        )
    ranks = unpack_fields(p.fields["mask"], rank_width(b, counts), f"{where}.mask")
    if np.any(ranks >= _C[b, counts]):
        raise CodecError(f"{where}.mask: a block rank exceeds its subset count")
    mask = subsets_of_ranks(ranks, counts, b).reshape(-1)[: k * n].reshape(n, k)
    vals = unpack_fields(p.fields["values"], np.full(p.kept, p.bits), f"{where}.values")
    codes_t = np.zeros((n, k), np.int32)
    codes_t[mask] = vals.astype(np.int64) - (1 << (p.bits - 1))
    steps = p.fields["scales"]
    if steps.shape != (k // p.group, n) or steps.dtype != np.float16:
        raise CodecError(
            f"{where}.scales: {steps.dtype} {steps.shape}, expected float16 {(k // p.group, n)}"
        )
    return codes_t.T, steps, mask.T


def dense_weight(p: PackedSparse, where: str) -> np.ndarray:
    """float32 [K, N]: code · step (the weight the fake-quantized model ran with)."""
    codes, steps, _ = decode(p, where)
    return codes.astype(np.float32) * np.repeat(steps.astype(np.float32), p.group, axis=0)


def bpw_floor(pattern, bits: int, group: int, sparsity: float | None = None) -> float:
    """Bits per weight a pattern stores at least (unstructured: the block count + the rank at the
    given sparsity's mean count + values + steps)."""
    pattern = pattern if isinstance(pattern, Pattern) else parse_pattern(pattern)
    keep = 1.0 - (pattern.sparsity if sparsity is None else sparsity)
    if pattern.kind == "nm":
        mask = int(rank_width(pattern.m, pattern.n)) / pattern.m
    else:
        b = UNSTRUCTURED_BLOCK
        mask = (COUNT_BITS + int(rank_width(b, round(keep * b)))) / b
    return mask + keep * bits + SCALE_BITS / group
