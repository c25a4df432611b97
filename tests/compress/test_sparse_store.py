"""Sparse storage: coded masks decode, pack -> unpack bit-exact, BPW by hand, stored == trained,
corrupt files rejected naming the tensor, the bpw command, packed decode == dense-equivalent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from compress_testing import tiny_model, token_batch
from flax import nnx

from andesvl_jax.cli import main
from andesvl_jax.compress import quantize_model
from andesvl_jax.compress.masks import mask_from_scores, parse_pattern
from andesvl_jax.compress.prune import SparsityRule, prune_model, sparse_quant_rules
from andesvl_jax.compress.sparse_codec import (
    decode,
    encode,
    pack_fields,
    subset_ranks,
    subsets_of_ranks,
    unpack_fields,
)
from andesvl_jax.compress.sparse_io import (
    PackedSparseLinear,
    load_sparse,
    read_sparse,
    save_sparse,
)
from andesvl_jax.convert.safetensors_io import CheckpointError
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.engine import Engine
from andesvl_jax.infer.sampling import SamplingParams


def _random_tensor(spec, bits, k=128, n=16, group=64, seed=0):
    rng = np.random.default_rng(seed)
    pattern = parse_pattern(spec)
    mask = mask_from_scores(rng.normal(size=(k, n)), pattern)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    codes = np.where(mask, rng.integers(lo, hi, size=(k, n)), 0)
    steps = rng.uniform(0.01, 1, size=(k // group, n)).astype(np.float16)
    return codes, steps, mask, pattern


@pytest.mark.parametrize("spec,bits", [("1:4", 4), ("2:4", 4), ("2:8", 3), (0.75, 3), (0.5, 2)])
def test_pack_unpack_bit_exact(spec, bits):
    codes, steps, mask, pattern = _random_tensor(spec, bits)
    packed = encode(codes, steps, mask, pattern, bits, "t")
    c2, s2, m2 = decode(packed, "t")
    np.testing.assert_array_equal(c2, codes)
    np.testing.assert_array_equal(m2, mask)
    assert s2.tobytes() == steps.tobytes()


def test_subset_ranks_and_bit_fields_by_hand():
    # positions {1, 3} of 4: C(1,1) + C(3,2) = 1 + 3 = 4; {0} of 4: 0; {2}: 2
    blocks = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]], bool)
    np.testing.assert_array_equal(subset_ranks(blocks), [4, 0, 2])
    np.testing.assert_array_equal(subsets_of_ranks(np.array([4, 0, 2]), [2, 1, 1], 4), blocks)
    data = pack_fields(np.array([5, 1, 3]), np.array([3, 2, 4]))  # 101 01 0011 -> 10101001 1.......
    np.testing.assert_array_equal(data, [0b10101001, 0b10000000])
    np.testing.assert_array_equal(unpack_fields(data, np.array([3, 2, 4])), [5, 1, 3])


def test_unstructured_coded_mask_is_under_one_bit_and_decodes():
    rng = np.random.default_rng(5)
    k, n = 256, 32
    mask = rng.random((k, n)) < 0.25  # Bernoulli: block counts vary
    codes = np.where(mask, rng.integers(-4, 4, size=(k, n)), 0)
    steps = np.ones((k // 128, n), np.float16)
    packed = encode(codes, steps, mask, 1 - mask.mean(), 3, "t")
    assert 8 * packed.fields["counts"].nbytes + 8 * packed.fields["mask"].nbytes < 0.9 * k * n
    c2, _, m2 = decode(packed, "t")
    np.testing.assert_array_equal(m2, mask)
    np.testing.assert_array_equal(c2, codes)


def test_bpw_against_a_hand_count():
    codes, steps, mask, p = _random_tensor("1:4", 4, k=64, n=8)
    pk = encode(codes, steps, mask, p, 4, "t")
    # 16 blocks x 8 columns: 2-bit index (32 B), 4-bit value (64 B); fp16 steps 1 x 8 (16 B)
    assert {f: a.nbytes for f, a in pk.fields.items()} == {"mask": 32, "values": 64, "scales": 16}
    assert pk.bits_per_weight() == 8 * 112 / 512 == 1.75
    # unstructured 75 %, exactly 16 kept per 64-block: 7-bit count + ceil(log2 C(64, 16)) = 49 bits
    k, n = 128, 4
    mask = np.zeros((k, n), bool)
    mask[::4] = True
    codes = np.where(mask, 1, 0)
    pk = encode(codes, np.ones((2, n), np.float16), mask, 0.75, 3, "t")
    assert math.ceil(math.log2(math.comb(64, 16))) == 49
    assert {f: a.nbytes for f, a in pk.fields.items()} == {
        "counts": 7,  # 8 blocks x 7 bits
        "mask": 49,  # 8 x 49 bits
        "values": 48,  # 128 kept x 3 bits
        "scales": 16,
    }
    assert pk.bits_per_weight() == 8 * 120 / 512


@pytest.fixture(scope="module")
def pruned():
    model = tiny_model(scan=True)
    quantize_model(model, sparse_quant_rules(4, 64))
    rules = (
        SparsityRule(r"^llm/layers/0/", "1:4"),  # separate rules per layer on stacked params
        SparsityRule(r"^llm/layers/\d+/attn/", "2:8"),
        SparsityRule(r"^llm/layers/\d+/mlp/", 0.75),
    )
    prune_model(model, rules, "magnitude")
    return model


def test_stored_model_equals_trained_model(pruned, tmp_path):
    path = save_sparse(pruned, tmp_path / "s.safetensors")
    dense = load_sparse(path, packed=False)
    ids = token_batch(1, 2, 12)
    np.testing.assert_allclose(
        np.asarray(dense(ids)[0]), np.asarray(pruned(ids)[0]), rtol=1e-5, atol=1e-5
    )
    sf = read_sparse(path)
    assert sf.packed["llm/layers/0/mlp/up"].pattern == "1:4"
    assert sf.packed["llm/layers/1/attn/q"].pattern == "2:8"
    assert sf.packed["llm/layers/1/mlp/up"].pattern == "unstructured"


def test_corrupt_file_rejected_naming_the_tensor(pruned, tmp_path):
    path = save_sparse(pruned, tmp_path / "s.safetensors")
    data = bytearray(path.read_bytes())
    sf = read_sparse(path)
    target = sf.packed["llm/layers/1/mlp/down"].fields["values"].tobytes()
    at = bytes(data).find(target)
    assert at > 0
    data[at + 3] ^= 0x10
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"llm\.layers\.1\.mlp\.down\.values is corrupt"):
        read_sparse(bad)


def test_bpw_target_below_the_pattern_floor_is_named(pruned, tmp_path):
    with pytest.raises(ValueError, match=r"llm/layers/0/.*1:4 at 4 bits.*above the requested 1.5"):
        save_sparse(pruned, tmp_path / "x.safetensors", target_bpw=1.5)


def test_bpw_command(pruned, tmp_path, capsys):
    path = save_sparse(pruned, tmp_path / "s.safetensors")
    assert main(["compress", "bpw", str(path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "llm/layers/0/mlp/up" in out and "1.750" in out
    assert "TOTAL pruned LLM linears" in out and "vision tower" in out and "embeddings" in out


def test_packed_engine_decode_equals_dense_equivalent(pruned, tmp_path):
    path = save_sparse(pruned, tmp_path / "s.safetensors")
    packed, dense = load_sparse(path), load_sparse(path, packed=False)
    # layer 0's q k v o gate up down are 1:4: they run on the sparse kernel dispatch
    assert sum(isinstance(m, PackedSparseLinear) for _, m in nnx.iter_modules(packed)) == 7
    src = SyntheticSource(
        {"text_arith": 1.0}, size=4, seed=0, split="eval", ctx=TaskContext(28, 56)
    )
    samples = [src[i] for i in range(2)]
    tok = TextTokenizer.default()
    outs = []
    for model in (packed, dense):
        engine = Engine(model, tok, image_max_size=56, max_prompt_tokens=256, max_patches=64)
        outs.append(
            [
                c.token_ids
                for c in engine.generate(samples, sampling=SamplingParams(), max_new_tokens=8)
            ]
        )
    assert outs[0] == outs[1]
    assert all(len(t) for t in outs[0])


def test_load_model_opens_a_sparse_file_or_its_directory(pruned, tmp_path):
    """chat / eval / the on-device job open the packed sparse model like any checkpoint."""
    from andesvl_jax.infer.load import SPARSE_FILE, load_model

    path = save_sparse(pruned, tmp_path / SPARSE_FILE)
    ids = token_batch(1, 2, 12)
    for where in (path, tmp_path):
        model, tok = load_model(where)
        assert sum(isinstance(m, PackedSparseLinear) for _, m in nnx.iter_modules(model)) == 7
        assert tok.vocab_size == TextTokenizer.default().vocab_size
        np.testing.assert_allclose(
            np.asarray(model(ids)[0]), np.asarray(pruned(ids)[0]), rtol=1e-4, atol=1e-4
        )
