"""One training run of tests/train/test_resume.py, by scenario: the run a test SIGKILLs mid-way.

usage: resume_worker.py SCENARIO STEPS WORKDIR [KILL_AFTER]   (SCENARIO: a key of SCENARIOS)

The tests build the uninterrupted reference and the resumed run in-process from `run_config`, and
the run that dies in a subprocess from this file, so all three train the same config. With
KILL_AFTER the run SIGKILLs its process group (itself and grain's prefetch workers) once checkpoint
KILL_AFTER is complete and the step after it is logged: a kill with uncheckpointed progress, at a
deterministic point (a kill from outside could land after the next checkpoint on a loaded machine).
"""

import os
import pathlib
import signal
import sys

import ml_collections

COMMON = [
    "--config.save_every=2",
    "--config.log_every=1",
    "--config.data.max_side=84",
    "--config.data.image_max_size=84",
    "--config.optim.warmup_steps=1",  # full lr from step 1: every step moves the policy
    "--config.progress=False",
    "--config.tensorboard=False",
]
SFT = ["--config.data.batch_size=8", "--config.data.max_tokens=128"]
SFT += ["--config.data.max_patches=128"]

# name -> (config file:arg, overrides)
SCENARIOS = {
    "sft": ("experiments/tiny.py:stage=sft", ["--config.data.worker_count=0", *SFT]),
    # grain multiprocess prefetch: the iterator state is the workers' states
    "sft_workers": ("experiments/tiny.py:stage=sft", ["--config.data.worker_count=2", *SFT]),
    # 4 preference pairs a step; delta (BCODelta) lives in state.extra
    "mpo": (
        "experiments/tiny.py:stage=mpo",
        ["--config.data.batch_size=8", "--config.data.max_tokens=128"]
        + ["--config.data.max_patches=64"],
    ),
    # 2 prompts x 4 completions a round, each round serves 2 steps (save_every is a multiple)
    "grpo": (
        "experiments/tiny.py:stage=grpo",
        ["--config.grpo.prompts_per_rollout=2", "--config.grpo.group_size=4"]
        + ["--config.grpo.updates_per_rollout=2", "--config.grpo.max_new_tokens=8"],
    ),
}


def register_rewards() -> None:
    """A reward a random model's completions vary in (their length), so advantages are not 0."""
    from andesvl_jax.train.rewards import REWARDS, register_reward

    if "completion_chars" not in REWARDS:
        register_reward("completion_chars")(lambda text, meta: min(len(text), 200) / 200)


def run_config(name: str, steps: int):
    """The scenario's run config (GRPO rewarded by completion length)."""
    from andesvl_jax.train.launch import load_config

    config_arg, overrides = SCENARIOS[name]
    config = load_config(config_arg, [f"--config.steps={steps}", *COMMON, *overrides])
    if name == "grpo":
        register_rewards()
        config.grpo.rewards = ml_collections.ConfigDict({"completion_chars": 1.0})
    return config


def die_after_checkpoint(at: int) -> None:
    """SIGKILL this process group once checkpoint `at` is written and a later step is logged."""
    from andesvl_jax.train import loop

    save, write = loop.Checkpointer.save, loop.MetricsWriter.write

    def save_then_wait(self, step, *args, **kw):
        save(self, step, *args, **kw)
        if step == at:
            self.wait()

    def write_then_die(self, step, metrics):
        write(self, step, metrics)
        if step > at:
            os.killpg(os.getpgid(0), signal.SIGKILL)

    loop.Checkpointer.save, loop.MetricsWriter.write = save_then_wait, write_then_die


def main(name: str, steps: str, workdir: str, kill_after: str | None = None) -> None:
    from andesvl_jax.train.loop import train

    if kill_after is not None:
        die_after_checkpoint(int(kill_after))
    train(run_config(name, int(steps)), pathlib.Path(workdir))


if __name__ == "__main__":
    main(*sys.argv[1:])
