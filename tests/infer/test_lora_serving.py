"""1+N LoRA serving: a batch mixing adapters equals each request run alone on its merged model;
loading, replacing and unloading adapters never recompiles; bad adapters and requests are clear
errors and the engine keeps serving."""

import functools

import jax
import pytest
from flax import nnx

from andesvl_jax.compress.lora import LoraRule, apply_lora, lora_modules, merged
from andesvl_jax.compress.lora_files import model_adapter
from andesvl_jax.config import get_preset
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.adapters import AdapterError
from andesvl_jax.infer.engine import Engine
from andesvl_jax.infer.generate import _generate
from andesvl_jax.infer.sampling import SamplingParams
from andesvl_jax.models.andesvl import AndesVL

GREEDY = SamplingParams()
PROMPTS = ["how many red squares?", "read the number", "what colour is it?"]


@functools.cache
def _base():
    return AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(3))


def base():
    """A fresh copy of one random tiny model (Engine and apply_lora change their own copy)."""
    return nnx.clone(_base())


def lora_model(seed: int, rules):
    model = apply_lora(base(), rules, seed=seed)
    for i, (_, m) in enumerate(lora_modules(model)):
        key = jax.random.key(100 * seed + i)
        m.lora_b.set_value(jax.random.normal(key, m.lora_b.shape) * 0.2)
    return model


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.default()


@pytest.fixture(scope="module")
def adapted():
    """Two adapters of different ranks/targets (and a third), each with its model."""
    rules = {
        "a": [LoraRule(r"^llm/layers/\d+/(attn|mlp)/", rank=4, alpha=8.0)],
        "b": [LoraRule(r"^llm/layers/\d+/attn/(q|v)$", rank=2, alpha=6.0)],
        "c": [LoraRule(r"^llm/layers/\d+/mlp/down$", rank=8, alpha=8.0)],
    }
    models = {n: lora_model(i + 1, r) for i, (n, r) in enumerate(rules.items())}
    return models, {n: model_adapter(m) for n, m in models.items()}


def samples(n=3):
    return [Sample([Message("user", p)], []) for p in PROMPTS[:n]]


def engine(model, tok, **kw):
    return Engine(model, tok, max_prompt_tokens=64, prefill_chunk=16, **kw)


def tokens(completions):
    return [c.token_ids for c in completions]


def test_mixed_batch_equals_each_request_alone_on_its_merged_model(tok, adapted):
    models, adapters = adapted
    eng = engine(base(), tok, adapter_slots=3, adapter_max_rank=8)
    eng.load_adapter("a", adapters["a"])
    eng.load_adapter("b", adapters["b"])
    mixed = tokens(
        eng.generate(samples(), adapter=["a", None, "b"], sampling=GREEDY, max_new_tokens=5)
    )
    alone = [
        tokens(engine(m, tok).generate(samples()[i : i + 1], sampling=GREEDY, max_new_tokens=5))[0]
        for i, m in enumerate([merged(models["a"]), base(), merged(models["b"])])
    ]
    assert mixed == alone
    assert mixed[0] != tokens(engine(base(), tok).generate(samples(1), max_new_tokens=5))[0]


def test_load_replace_unload_do_not_recompile(tok, adapted):
    _, adapters = adapted
    eng = engine(base(), tok, adapter_slots=2, adapter_max_rank=8)
    eng.load_adapter("x", adapters["a"])
    run = lambda: tokens(eng.generate(samples(2), adapter=["x", None], max_new_tokens=4))  # noqa: E731
    first = run()
    compiled = _generate._cache_size()
    eng.load_adapter("x", adapters["c"])  # replace in place
    replaced = run()
    eng.load_adapter("y", adapters["b"])
    eng.unload_adapter("y")
    eng.unload_adapter("x")
    eng.load_adapter("x", adapters["a"])
    again = run()
    assert _generate._cache_size() == compiled  # no new compilation for any swap
    assert replaced[0] != first[0] and again == first and replaced[1] == first[1]


def test_bad_adapters_and_requests_are_clear_errors_and_serving_goes_on(tok, adapted):
    _, adapters = adapted
    eng = engine(base(), tok, adapter_slots=1, adapter_max_rank=4)
    with pytest.raises(AdapterError, match="rank 8 exceeds the engine's max rank 4"):
        eng.load_adapter("c", adapters["c"])
    eng.load_adapter("a", adapters["a"])
    with pytest.raises(AdapterError, match=r"all 1 adapter slots are in use \(a\)"):
        eng.load_adapter("b", adapters["b"])
    with pytest.raises(
        AdapterError, match=r"adapter\(s\) \['zzz'\] not loaded \(loaded: \['a'\]\)"
    ):
        eng.generate(samples(2), adapter=["a", "zzz"], max_new_tokens=2)
    with pytest.raises(AdapterError, match="'q' is not loaded"):
        eng.unload_adapter("q")
    narrow = engine(base(), tok, adapter_slots=1, adapter_targets=r"attn/(q|v)$")
    with pytest.raises(
        AdapterError, match=r"targets llm/layers/0/attn/k, which has no adapter slot"
    ):
        narrow.load_adapter("a", adapters["a"])
    out = eng.generate(samples(2), adapter=["a", None], max_new_tokens=2)  # still serving
    assert len(out) == 2 and all(c.token_ids for c in out)
    plain = engine(base(), tok)
    with pytest.raises(AdapterError, match="no adapter slots"):
        plain.generate(samples(1), adapter="a")
    wide = adapters["a"].factors["llm/layers/0/attn/q"]
    bad = type(adapters["a"])({"llm/layers/0/attn/q": (wide[0][:5], wide[1], wide[2])})
    with pytest.raises(AdapterError, match="maps 5 -> .* features, the base linear maps"):
        eng.load_adapter("a", bad)


def test_chat_command_with_a_lora_adapter(fixtures_dir, tmp_path, capsys):
    from andesvl_jax.cli import main
    from andesvl_jax.compress.lora_files import save_adapter
    from andesvl_jax.infer.load import load_model

    ckpt = fixtures_dir / "andesvl_aimv2_tiny"
    model, _ = load_model(ckpt, overrides={"scan_layers": False})
    save_adapter(apply_lora(model, "llm_qv"), tmp_path / "scenario")
    argv = ["chat", "--checkpoint", str(ckpt), "--max-new-tokens", "3"]
    assert main([*argv, "--lora", f"scenario={tmp_path / 'scenario'}", "Hello?"]) == 0
    assert main([*argv, "--lora", "scenario", "Hello?"]) == 2
    assert "--lora 'scenario': expected NAME=DIR" in capsys.readouterr().err
    assert main([*argv, "--lora", f"s={tmp_path}", "Hello?"]) == 2
    assert "not a PEFT adapter directory (adapter_config.json missing)" in capsys.readouterr().err
