"""compile-check (train/compile_check.py): every size x stage of experiments/andesvl.py lowers at its
real widths, vocabulary, lengths and batch on an 8-device FSDP mesh (one LLM and one ViT layer, so
the whole matrix traces in CI time), two compile and report memory, and configs that cannot run or
do not fit exit with the reason."""

import json
import math
import re

import jax
import pytest

from andesvl_jax import cli
from andesvl_jax.config import get_preset
from andesvl_jax.train.compile_check import compile_check, lower_train_step, shortfall
from andesvl_jax.train.launch import load_config

SIZES = ("0.6b", "1b", "2b", "4b")
STAGES = ("align", "align_hr", "joint", "multitask", "sft", "mpo", "grpo_warmup", "grpo")
ONE_LAYER = [
    "--config.model.text.num_layers=1",
    "--config.model.vision.num_layers=1",
    "--config.data.path=/data/train.jsonl",  # REQUIRED; compile-check never opens it
]


def andesvl(size: str, stage: str, *extra: str):
    return load_config(f"experiments/andesvl.py:size={size},stage={stage}", [*ONE_LAYER, *extra])


def token_embedding(state):
    """The LLM's token table, trainable or frozen (the align stage freezes the LLM)."""
    for tree in (state.params, state.frozen):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            if "embed" in jax.tree_util.keystr(path) and leaf.ndim == 2:
                if "llm" in jax.tree_util.keystr(path):
                    return leaf
    raise AssertionError("no LLM embedding in the state")


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_every_stage_lowers_at_real_scale(size):
    """Real hidden sizes, heads, the 151k vocabulary, the stage budgets' rows and lengths (32 768
    tokens for multitask, 4096 new tokens for GRPO), MPO's frozen reference, GRPO's rollout batch."""
    preset = get_preset(size)
    for stage in STAGES:
        step = lower_train_step(andesvl(size, stage))
        assert step.mesh.shape["fsdp"] == 8, stage
        assert step.model_cfg.text.hidden_size == preset.text.hidden_size, stage
        assert step.model_cfg.text.vocab_size == preset.text.vocab_size, stage
        assert step.shape.tokens <= preset.text.max_position, stage
        embed = token_embedding(step.state)
        # FSDP shards the parameters: one device holds 1/8 of the embedding table
        assert math.prod(embed.sharding.shard_shape(embed.shape)) * 8 == embed.size, stage
        if stage == "mpo":  # the reference policy is part of the step's state
            assert step.state.extra, stage


@pytest.mark.slow
@pytest.mark.parametrize(("size", "stage"), [("0.6b", "joint"), ("4b", "grpo")])
def test_compile_reports_per_device_memory(size, stage):
    # one row per device, as the budgets' global batch is meant for (>= 128 devices)
    per_device = ["--config.data.batch_size=8", "--config.grpo.prompts_per_rollout=1"]
    report = compile_check(andesvl(size, stage, *per_device), hbm_gib=80)
    preset = get_preset(size)
    # one LLM layer + embeddings; fp32 master weights sharded 8 ways
    embed_bytes = preset.text.vocab_size * preset.text.hidden_size * 4
    assert report.params >= embed_bytes / 8
    assert report.optimizer >= report.params  # two moments per trainable weight (the ViT's too)
    assert report.temp > 0 and report.peak > report.params + report.optimizer
    assert report.flops > 0 and report.fits, shortfall(report)
    row = report.row()
    assert row["mesh"] == "fsdp8" and row["tokens"] == report.tokens


def run_cli(capsys, *args):
    code = cli.main(["compile-check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


TINY = "experiments/tiny.py:stage=sft"


def test_a_step_that_does_not_fit_exits_1_with_the_shortfall(capsys):
    code, out, err = run_cli(capsys, "--config", TINY, "--mesh", "fsdp=2", "--hbm-gib", "0.0001")
    assert code == 1
    row = json.loads(out)
    assert row["fits"] is False and row["mesh"] == "fsdp2"
    assert "GiB over the 0 GiB HBM" in err and "temporaries" in err and "parameters" in err
    code, out, _ = run_cli(capsys, "--config", TINY, "--mesh", "fsdp=2", "--hbm-gib", "80")
    assert code == 0 and json.loads(out)["peak_gib"] < 80


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mesh", "fsdp=5"], r"data.batch_size=\d+ must divide by data\*fsdp=5"),
        (["--mesh", "fsdp=2", "--config.data.max_tokens=99999"], "exceed the model's maximum"),
        (["--mesh", "fsdp=2", "--config.optim.accum_steps=7"], "optim.accum_steps=7"),
        (["--mesh", "fsdp=2", "--config.no_such_field=1"], "bad --config or override"),
    ],
)
def test_a_config_that_cannot_run_exits_2_naming_why(capsys, args, message):
    code, out, err = run_cli(capsys, "--config", TINY, *args)
    assert code == 2 and out == ""
    assert TINY in err
    assert re.search(message, err), err


def test_an_unknown_stage_or_mesh_axis_is_named(capsys):
    code, _, err = run_cli(capsys, "--config", "experiments/tiny.py:stage=nope", "--mesh", "fsdp=2")
    assert code == 2 and "nope" in err
    with pytest.raises(SystemExit) as e:
        run_cli(capsys, "--config", TINY, "--mesh", "pipeline=2")
    assert e.value.code == 2 and "pipeline" in capsys.readouterr().err
