"""The simulated phone: valid calls run, schema failures are never executed, scene feedback."""

import pytest

from andesvl_jax.agent.calls import FunctionCall
from andesvl_jax.agent.phone_api import ExecutionError, PhoneAPI
from andesvl_jax.agent.rewards import execution_feedback


def test_valid_call_runs_and_reports_the_scene_match(registry):
    phone = PhoneAPI(registry)
    call = FunctionCall("amazon_shopping", {"product": "mug", "quantity": 2})
    scene = call.to_json()
    run = phone.execute(call, {"function": scene["function"], "arguments": scene["arguments"]})
    assert run.ok and run.result["total"] == 19.0 and run.matches_scene
    other = FunctionCall("amazon_shopping", {"product": "lamp", "quantity": 2})
    assert (
        phone.execute(other, {"function": "amazon_shopping", "arguments": call.args}).matches_scene
        is False
    )


def test_schema_failures_are_not_executed(registry):
    calls = []
    phone = PhoneAPI(registry, {"pet_care": lambda c: calls.append(c) or {}})
    with pytest.raises(ExecutionError, match="not executed"):
        phone.execute(FunctionCall("pet_care", {"pet": "lion", "problem": "fleas"}))
    with pytest.raises(ExecutionError, match="no app"):
        phone.execute(FunctionCall("send_email", {"recipient": "bob", "topic": "party"}))
    assert calls == []


def test_execution_feedback_reward():
    meta = {"call": {"function": "pet_care", "arguments": {"pet": "cat", "problem": "fleas"}}}
    assert execution_feedback("<nexa_9>('cat', 'fleas')<nexa_end><|im_end|>", meta) == 1.0
    assert execution_feedback("<nexa_9>('dog', 'fleas')<nexa_end>", meta) == 0.0
    assert execution_feedback("<nexa_9>('lion', 'fleas')<nexa_end>", meta) == 0.0  # schema
    assert execution_feedback("garbage", meta) == 0.0
    assert execution_feedback("<nexa_none>No.", {"call": {"function": None}}) == 1.0
