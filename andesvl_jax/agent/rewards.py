"""GRPO rewards for the agent (registered into train/rewards.py REWARDS).

* `agent_execution`: the simulated phone's feedback: 1.0 when the completion parses as a valid call
  (or a text answer), the phone executes it, and it is the right action for the scene (the sample's
  true call); 0.0 for a wrong action, a schema failure (never executed) or an unparsable text.
* `agent_reward_model`: the trained reward model's probability that the call is right for the
  (image, request) pair (agent/reward_model.py); needs `config.agent.reward_model` (a directory
  written by `andesvl-jax agent-reward`), loaded at the first use.
"""

from __future__ import annotations

from andesvl_jax.agent.calls import CallParseError, CallSchemaError, NoCall, parse_call
from andesvl_jax.agent.corpus import registry as phone_registry
from andesvl_jax.agent.phone_api import ExecutionError, PhoneAPI
from andesvl_jax.data.answers import clean_completion
from andesvl_jax.train.rewards import REWARDS, register_reward

_STATE: dict = {"scorer": None, "path": None}


def execution_feedback(completion: str, meta: dict) -> float:
    registry = phone_registry()
    try:
        call = parse_call(clean_completion(completion), registry, meta.get("style", "token"))
    except (CallParseError, CallSchemaError):
        return 0.0
    scene = meta["call"]
    if isinstance(call, NoCall):
        return float(scene.get("function") is None)
    try:
        return float(bool(PhoneAPI(registry).execute(call, scene).matches_scene))
    except ExecutionError:
        return 0.0


def reward_model_score(completion: str, meta: dict) -> float:
    if _STATE["scorer"] is None:
        if not _STATE["path"]:
            raise RuntimeError(
                "reward 'agent_reward_model' needs config.agent.reward_model (andesvl-jax agent-reward)"
            )
        from andesvl_jax.agent.reward_model import RewardScorer

        _STATE["scorer"] = RewardScorer.load(_STATE["path"])  # once, at the first rollout
    scorer = _STATE["scorer"]
    return float(scorer.score_one(meta["image"], meta["request"], clean_completion(completion)))


def configure(config) -> None:
    path = config.agent.get("reward_model") if "agent" in config else None
    wants = "agent_reward_model" in dict(config.get("grpo", {}).get("rewards", {}) or {})
    if wants and config.get("stage") == "grpo" and not path:
        raise ValueError(
            "grpo.rewards uses agent_reward_model but config.agent.reward_model is empty: "
            "train one with `andesvl-jax agent-reward` and pass its directory"
        )
    if path != _STATE["path"]:
        _STATE["scorer"], _STATE["path"] = None, path


if "agent_execution" not in REWARDS:
    register_reward("agent_execution")(execution_feedback)
    register_reward("agent_reward_model")(reward_model_score)
