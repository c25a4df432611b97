"""Functional-token agent (Octopus v2/v3, docs/agent.md) on the tiny model, from a grown workdir.

    andesvl-jax agent-grow --from runs/demo/sft --out runs/agent/grown
    andesvl-jax train --config experiments/agent.py:init=runs/agent/grown \
        --workdir runs/agent/functional
    andesvl-jax agent-eval --checkpoint runs/agent/functional --out runs/agent/eval_sft.json
    andesvl-jax agent-reward --checkpoint runs/agent/functional --out runs/agent/reward
    andesvl-jax train --config experiments/agent.py:init=runs/agent/functional,recipe=grpo \
        --workdir runs/agent/grpo --config.agent.reward_model=runs/agent/reward

Args (ARGS): init=DIR (the grown workdir, or a run trained from it: its config.json gives the
vocabulary size and tokenizer), recipe=functional|functional_lora|text_baseline|grpo (default functional), steps=N.
`text_baseline` trains the same model on function-name-as-text targets (the Octopus v2 baseline).
The agent package is a training plugin (config.plugins): it registers the stage, the objective, the
agent_* synthetic tasks and the agent_* rewards.
"""

import json
import pathlib

from andesvl_jax.configs import Arg, base_config, parse_config_arg

AGENT_STAGES: dict[str, dict] = {
    "functional": {
        "stage": "functional",
        "steps": 600,
        "optim.lr": 2e-3,
        "data.mixture": {"agent_train": 1.0},
    },
    "functional_lora": {
        "stage": "functional_lora",
        "steps": 600,
        "optim.lr": 3e-3,
        "data.mixture": {"agent_train": 1.0},
        "lora.rank": 16,
        "lora.alpha": 32.0,
    },
    "text_baseline": {
        "stage": "functional",
        "steps": 600,
        "optim.lr": 2e-3,
        "data.mixture": {"agent_text_train": 1.0},
    },
    # GRPO from the functional stage: reward model score + the simulated phone's feedback
    "grpo": {
        "stage": "grpo",
        "steps": 40,
        "optim.lr": 3e-4,
        "seed": 1,
        "data.mixture": {"agent_train": 1.0},
        "data.max_tokens": 160,
        "grpo.prompts_per_rollout": 8,
        "grpo.group_size": 8,
        "grpo.updates_per_rollout": 1,
        "grpo.beta": 0.04,
        "grpo.max_new_tokens": 40,
        "grpo.temperature": 1.0,
        "grpo.template": "instruct",
        "grpo.curriculum": "",
        "grpo.rewards": {"agent_execution": 1.0, "agent_reward_model": 0.5},
        "save_every": 20,
    },
}

# what the command line must set (the grpo recipe reads its reward model from here)
REQUIRED = {"agent.reward_model": "runs/agent/reward"}

ARGS = {
    "init": Arg("runs/agent/grown", help="the grown workdir (or a run trained from it)"),
    "recipe": Arg("functional", choices=tuple(AGENT_STAGES), help="what to train (AGENT_STAGES)"),
    "steps": Arg(None, type=int, help="training steps (default: the stage's)", example="3"),
}


def get_config(arg: str = "init=runs/agent/grown"):
    args = parse_config_arg(arg, ARGS, __file__)
    c = base_config()
    c.plugins = "andesvl_jax.agent"
    c.model.preset = "tiny"
    c.model.scan_layers = False
    run = pathlib.Path(args["init"]) / "config.json"
    if run.is_file():  # the grown vocabulary and its tokenizer
        grown = json.loads(run.read_text())
        c.model.text.vocab_size = grown["model"]["text"]["vocab_size"]
        c.data.tokenizer = grown["data"]["tokenizer"]
    c.init.from_stage_workdir = args["init"]
    c.agent.functional_weight = 2.0
    c.agent.functions = ""  # a function file; empty = the phone APIs (agent/phone_functions.json)
    c.agent.reward_model = ""  # grpo: the reward model (andesvl-jax agent-reward); empty = none
    c.data.stage = "demo"
    c.data.worker_count = 0  # the agent tasks are registered in this process
    c.data.min_side, c.data.max_side = 56, 84
    c.data.batch_size = 16
    c.data.max_tokens = 256
    c.data.max_patches = 192
    c.data.image_max_size = 112
    c.optim.warmup_steps = 20
    c.optim.weight_decay = 0.0
    c.log_every = 10
    c.save_every = 100
    c.update_from_flattened_dict(AGENT_STAGES[args["recipe"]])
    if args["steps"] is not None:
        c.steps = args["steps"]
    return c
