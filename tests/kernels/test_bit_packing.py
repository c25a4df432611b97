"""Bit-plane packing and the packed weight formats: exact round trips, pinned bit layout, BPW."""

import jax.numpy as jnp
import numpy as np
import pytest
from andesvl_jax.kernels.packing import (
    PLANE_WIDTHS,
    pack_bits,
    pack_codes,
    unpack_bits,
    unpack_codes,
)
from andesvl_jax.kernels.quant_format import (
    dequantize_weight,
    pack_weight,
    quantize_weight,
    unpack_weight_codes,
)
from andesvl_jax.kernels.sparse_format import (
    densify_weight,
    pack_sparse,
    sparsify_weight,
    unpack_sparse,
)


def test_bit_layout_is_lsb_first_along_k():
    # docs/formats.md: code k of a word sits in bits [k*width, (k+1)*width).
    codes = jnp.arange(8, dtype=jnp.int32)[:, None]  # K=8, N=1, width 4 -> one word
    assert int(pack_bits(codes, 4)[0, 0]) == 0x76543210
    three = jnp.full((32, 1), 0b101, jnp.int32)
    low, high = pack_codes(three, 3)  # 3 bits = 2-bit plane (low bits) + 1-bit plane
    assert int(low[0, 0]) == 0x5555_5555 and low.shape == (2, 1)
    assert int(high[0, 0]) == 0xFFFF_FFFF and high.shape == (1, 1)


@pytest.mark.parametrize("bits", sorted(PLANE_WIDTHS))
def test_pack_unpack_codes_round_trip(bits, rng):
    codes = jnp.asarray(rng.integers(0, 2**bits, size=(128, 7)), jnp.int32)
    planes = pack_codes(codes, bits)
    assert all(p.dtype == jnp.uint32 for p in planes)
    assert sum(p.size for p in planes) * 32 == codes.size * bits  # exactly `bits` bits per code
    np.testing.assert_array_equal(unpack_codes(planes, bits), codes)


def test_unpack_bits_inverts_pack_bits_on_every_word(rng):
    words = jnp.asarray(rng.integers(0, 2**32, size=(3, 5), dtype=np.uint64).astype(np.uint32))
    for width in (1, 2, 4, 8):
        np.testing.assert_array_equal(pack_bits(unpack_bits(words, width), width), words)


@pytest.mark.parametrize("zero_point", [False, True])
@pytest.mark.parametrize("bits", [8, 4, 3, 2])
@pytest.mark.parametrize("group", [32, 64, 128])
def test_weight_round_trip_and_quantisation_error(bits, group, zero_point, rng):
    w = jnp.asarray(rng.normal(size=(200, 9)), jnp.float32)  # K not a multiple of the group
    pw = quantize_weight(w, bits, group, zero_point)
    codes = unpack_weight_codes(pw)
    assert codes.shape == (pw.k_padded, 9) and int(codes.min()) >= 0 and int(codes.max()) < 2**bits
    again = pack_weight(codes, pw.scales, pw.zeros, bits, group, pw.in_features)
    for a, b in zip(again.planes, pw.planes, strict=True):
        np.testing.assert_array_equal(a, b)
    deq = dequantize_weight(pw)
    step = np.repeat(np.asarray(pw.scales, np.float32), group, axis=0)[:200]
    # Round to nearest: within half a step (plus the fp16 rounding of the scale) of the weight.
    assert np.all(
        np.abs(np.asarray(deq) - np.asarray(w)) <= 0.5 * step + 2e-3 * np.abs(np.asarray(w)) + 1e-6
    )


def test_sparse_round_trip_structure_and_bits_per_weight(rng):
    w = jnp.asarray(rng.normal(size=(256, 16)), jnp.float32)
    sw = sparsify_weight(w, group_size=128)
    index, values = unpack_sparse(sw)
    again = pack_sparse(index, values, sw.scales, 128, 256)
    np.testing.assert_array_equal(again.index, sw.index)
    np.testing.assert_array_equal(again.values, sw.values)
    dense = np.asarray(densify_weight(sw)).reshape(64, 4, 16)
    assert np.all((dense != 0).sum(1) <= 1)  # 1:4 structure: at most one kept weight per block
    kept = np.abs(np.asarray(w)).reshape(64, 4, 16).argmax(1)
    nonzero = (dense != 0).any(1)
    np.testing.assert_array_equal(np.abs(dense).argmax(1)[nonzero], kept[nonzero])
    assert sw.bits_per_weight() == pytest.approx(1.625)  # 0.5 index + 1.0 value + 16/128 scale
    assert sparsify_weight(w, group_size=64).bits_per_weight() == pytest.approx(1.75)


@pytest.mark.parametrize("bad", [dict(bits=5), dict(group_size=48)])
def test_unsupported_format_is_a_clear_error(bad):
    kw = dict(bits=4, group_size=64) | bad
    with pytest.raises(ValueError, match="unsupported"):
        quantize_weight(jnp.zeros((64, 4)), **kw)
