"""The agent path end to end on a tiny random model: grow -> functional stage -> `agent` command
(with --execute, and a bad image) -> reward model -> GRPO with reward model + execution feedback."""

import json
import pathlib

import pytest
from flax import nnx
from PIL import Image

from andesvl_jax.agent.functions import phone_functions
from andesvl_jax.agent.grow import grow_workdir, save_model_workdir
from andesvl_jax.agent.predict import ImageError
from andesvl_jax.agent.reward_model import RewardScorer, train_reward_model
from andesvl_jax.cli import main
from andesvl_jax.config import get_preset
from andesvl_jax.configs import base_config
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.models.andesvl import AndesVL
from andesvl_jax.train.launch import load_config
from andesvl_jax.train.loop import train

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "agent.py"
SMALL = [
    "--config.data.batch_size=8",
    "--config.data.max_tokens=192",
    "--config.log_every=1",
    "--config.tensorboard=False",
    "--config.progress=False",
    "--config.optim.warmup_steps=1",
]


@pytest.mark.slow
def test_agent_path_end_to_end(tmp_path, capsys):
    source = tmp_path / "sft"
    config = base_config()
    config.model.preset = "tiny"
    config.model.scan_layers = False
    model = AndesVL(get_preset("tiny", scan_layers=False), rngs=nnx.Rngs(0))
    save_model_workdir(model, config, TextTokenizer.default(), source)
    record = grow_workdir(source, tmp_path / "grown", phone_functions())
    assert record["vocab_size"] == 524

    functional = tmp_path / "functional"
    cfg = load_config(f"{EXPERIMENT}:init={tmp_path / 'grown'},steps=2", SMALL)
    assert train(cfg, functional)["stop_reason"] == "completed"
    metrics = [json.loads(line) for line in (functional / "metrics.jsonl").read_text().splitlines()]
    assert "functional_accuracy" in metrics[0]

    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64), (30, 70, 220)).save(image)
    status = main(
        [
            "agent",
            "--checkpoint",
            str(functional),
            "--image",
            str(image),
            "--execute",
            "Buy 2 of these on Amazon.",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert status in (0, 2) and out["error"] is None  # constrained: always a valid call
    if out["function"] is not None:
        assert out["execution"]["ok"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="bad.png"):
        main(["agent", "--checkpoint", str(functional), "--image", str(bad), "hi"])

    reward = tmp_path / "reward"
    summary = train_reward_model(functional, reward, steps=2, pairs=2, eval_pairs=4)
    assert 0.0 <= summary["heldout_pair_accuracy_after"] <= 1.0
    score = RewardScorer.load(reward).score_one(Image.open(image), "hi", "<nexa_none>no")
    assert 0.0 < score < 1.0

    grpo = load_config(
        f"{EXPERIMENT}:init={functional},recipe=grpo,steps=2",
        SMALL
        + [
            "--config.grpo.prompts_per_rollout=2",
            "--config.grpo.group_size=4",
            "--config.grpo.max_new_tokens=8",
            f"--config.agent.reward_model={reward}",
        ],
    )
    assert train(grpo, tmp_path / "grpo")["stop_reason"] == "completed"
    logged = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert "mean_reward" in logged[0]
