"""GGUF LoRA adapters applied by llama.cpp at run time (1+N: one base, several adapters with
scales) give the logits of the model merged by our own code (compress/lora.merged)."""

import dataclasses

import gguf
import numpy as np
import pytest
from andesvl_jax.export.gguf import write_llm
from andesvl_jax.export.gguf_lora import write_lora
from andesvl_jax.export.verify import OurEngine
from flax import nnx
from gguf_testing import require_llama_cpp, tiny_model

from andesvl_jax.compress.lora import merged
from andesvl_jax.compress.lora_files import Adapter, attach

IDS = list(range(40, 90))


def random_adapter(seed: int, ranks: dict[str, int], alpha: float) -> Adapter:
    rng = np.random.default_rng(seed)
    factors = {}
    for name, r in ranks.items():
        fan_in, fan_out = (64, 128) if name.endswith(("gate", "up")) else (64, 64)
        if name.endswith("down"):
            fan_in, fan_out = 128, 64
        if name.endswith(("attn/k", "attn/v")):
            fan_out = 32
        a = rng.normal(0, 0.5, (fan_in, r)).astype(np.float32)
        b = rng.normal(0, 0.5, (r, fan_out)).astype(np.float32)
        factors[name] = (a, b, alpha / r)
    return Adapter(factors)


def scaled(adapter: Adapter, s: float) -> Adapter:
    return dataclasses.replace(
        adapter, factors={k: (a, b * s, sc) for k, (a, b, sc) in adapter.factors.items()}
    )


def merged_with(model, *adapters):
    for adapter in adapters:
        model = merged(attach(nnx.clone(model), adapter))  # attach works in place
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require_llama_cpp()
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    d = tmp_path_factory.mktemp("lora")
    base = tiny_model(seed=3)
    one = random_adapter(1, {f"llm/layers/{i}/attn/{p}": 4 for i in (0, 1) for p in "qkvo"}, 8.0)
    # per-module ranks with different alpha / r: scales folded into lora_b, alpha = 0
    two = random_adapter(2, {"llm/layers/0/mlp/up": 2, "llm/layers/1/mlp/down": 8,
                             "llm/layers/1/attn/q": 4}, 4.0)  # fmt: skip
    two.factors["llm/layers/1/attn/q"] = (*two.factors["llm/layers/1/attn/q"][:2], 0.3)
    write_llm(base, None, d / "base.gguf")
    write_lora(one, base, d / "one.gguf")
    write_lora(two, base, d / "two.gguf")
    runtime = LlamaCpp(d / "base.gguf", n_ctx=64)
    runtime.load_adapter("one", d / "one.gguf")
    runtime.load_adapter("two", d / "two.gguf")
    return base, one, two, runtime, d


def check(got, want):
    err = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))
    assert err < 1e-4, err


def test_adapter_file_metadata(setup):
    *_, d = setup
    r = gguf.GGUFReader(d / "one.gguf")
    assert r.fields["general.type"].contents() == "adapter"
    assert r.fields["adapter.type"].contents() == "lora"
    assert r.fields["adapter.lora.alpha"].contents() == 8.0
    assert gguf.GGUFReader(d / "two.gguf").fields["adapter.lora.alpha"].contents() == 0.0
    names = {t.name: tuple(t.shape) for t in r.tensors}
    assert names["blk.0.attn_k.weight.lora_a"] == (64, 4)  # ggml ne: [in, r]
    assert names["blk.0.attn_k.weight.lora_b"] == (4, 32)  # [r, out]


def test_one_adapter_equals_our_merged_model(setup):
    base, one, _, runtime, _ = setup
    runtime.set_adapters({"one": 1.0})
    check(runtime.logits(IDS), OurEngine(merged_with(base, one)).logits(IDS))


def test_two_adapters_with_scales_equal_our_merged_model(setup):
    base, one, two, runtime, _ = setup
    runtime.set_adapters({"one": 0.5, "two": 1.5})
    want = OurEngine(merged_with(base, scaled(one, 0.5), scaled(two, 1.5))).logits(IDS)
    check(runtime.logits(IDS), want)
    runtime.set_adapters({})
    check(runtime.logits(IDS), OurEngine(base).logits(IDS))
