"""Bad eviction requests fail on the host with a clear message, before anything compiles."""

import numpy as np
import pytest
from flax import nnx

from andesvl_jax.cli import main
from andesvl_jax.config import get_preset
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.engine import Engine
from andesvl_jax.infer.generate import generate
from andesvl_jax.infer.kv import Budget, get_policy, plan
from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams
from andesvl_jax.models.andesvl import AndesVL


@pytest.mark.parametrize(
    "budget, message",
    [
        (0, "in \\(0, 1\\]"),
        (0.0, "in \\(0, 1\\]"),
        (-0.5, "in \\(0, 1\\]"),
        (1.5, "as a fraction kept must be in \\(0, 1\\]"),
        (True, "fraction in \\(0, 1\\] or a token count"),
        ("lots", "neither a fraction nor a token count"),
    ],
)
def test_bad_budgets(budget, message):
    with pytest.raises(ValueError, match=message):
        Budget.parse(budget)


def test_budget_forms():
    assert Budget.parse(0.25).kept(100) == 25 and Budget.parse("25%").kept(100) == 25
    assert Budget.parse(512).kept(100) == 100 and Budget.parse("512").kept(4096) == 512
    assert Budget.parse(1).fraction == 1.0  # 1 is "everything", not one token
    assert str(Budget.parse(0.25)) == "25 % kept (75 % removed)"


def test_unknown_policy_and_bad_settings():
    with pytest.raises(ValueError, match="unknown kv policy 'snapkvv'; known: adakv, h2o"):
        get_policy("snapkvv")
    with pytest.raises(ValueError, match="odd"):
        get_policy("snapkv", kernel=4)
    with pytest.raises(ValueError, match="schedule"):
        get_policy("snapkv", schedule="later")


def test_budget_smaller_than_the_protected_tokens():
    kw = dict(padded=256, chunk=64, max_new=8, num_layers=2)
    with pytest.raises(ValueError, match="16 tokens is smaller .* window 64 \\+ sinks 0 = 64"):
        plan("snapkv", 16, [256], **kw)
    with pytest.raises(ValueError, match="keeps 25 of row 1's 256 .* fewer than the 68"):
        plan(get_policy("streaming", window=64), 0.1, [60, 256], **kw)
    with pytest.raises(ValueError, match="\\+ 40 vision tokens"):
        plan(
            get_policy("snapkv", window=8, protect_vision=True), 32, [200], **kw, vision_counts=[40]
        )
    assert plan("snapkv", 0.1, [40], **kw).targets.tolist() == [[40], [40]]  # all protected


@pytest.fixture(scope="module")
def tiny():
    return AndesVL(get_preset("tiny"), rngs=nnx.Rngs(0))


def test_generate_checks_before_compiling(tiny):
    ids = np.ones((1, 8), np.int32)
    kw = dict(max_new_tokens=2, stop_tokens=(), pad_id=0)
    greedy = SamplingBatch.of([SamplingParams()])
    with pytest.raises(ValueError, match="decoding_layout"):  # scanned layers
        generate(tiny, ids, [8], None, greedy, kv_policy="snapkv", kv_budget=0.5, **kw)
    with pytest.raises(ValueError, match="needs a kv_budget"):
        generate(tiny, ids, [8], None, greedy, kv_policy="snapkv", **kw)
    with pytest.raises(ValueError, match="without a kv_policy"):
        generate(tiny, ids, [8], None, greedy, kv_budget=0.5, **kw)


def test_engine_and_chat_reject_bad_requests(tiny, tmp_path, capsys):
    engine = Engine(tiny, TextTokenizer.default(), max_prompt_tokens=64)
    with pytest.raises(ValueError, match="unknown kv policy"):
        engine.chat("hi", kv_policy="nope", kv_budget=0.5)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        engine.chat("hi", kv_policy="snapkv", kv_budget=0)
    code = main(
        ["chat", "--checkpoint", str(tmp_path), "--kv-policy", "nope", "--kv-budget", "0.25", "hi"]
    )
    assert code == 2 and "unknown kv policy 'nope'" in capsys.readouterr().err


def test_prompt_longer_than_the_maximum_fails_before_compiling(tiny, monkeypatch):
    from andesvl_jax.data.errors import DataError
    from andesvl_jax.data.sample import Message, Sample
    from andesvl_jax.infer import engine as engine_module

    def never(*a, **k):
        raise AssertionError("generate ran: the length check must come first")

    monkeypatch.setattr(engine_module, "generate", never)
    engine = Engine(tiny, TextTokenizer.default(), max_prompt_tokens=64)
    long = Sample([Message("user", "x" * 200)], [])
    with pytest.raises(DataError, match="text tokens .* exceed max_tokens=64"):
        engine.generate([long], kv_policy="snapkv", kv_budget=0.25)
