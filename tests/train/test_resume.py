"""A run killed with SIGKILL mid-way and resumed produces bit-identical losses; SIGTERM saves and exits."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from andesvl_jax.train.launch import load_config
from andesvl_jax.train.loop import train

OVERRIDES = [
    "--config.steps=8",
    "--config.save_every=2",
    "--config.log_every=1",
    "--config.data.batch_size=8",
    "--config.data.max_tokens=128",
    "--config.data.max_patches=128",
    "--config.data.image_max_size=84",
    "--config.data.max_side=84",
    "--config.data.worker_count=0",
    "--config.progress=False",
    "--config.tensorboard=False",
]
CONFIG = "experiments/tiny.py:stage=sft"


def logged(workdir):
    """step -> loss, the last value logged for each step (a resumed run re-logs replayed steps)."""
    path = workdir / "metrics.jsonl"
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


def start(workdir):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "andesvl_jax",
            "train",
            "--config",
            CONFIG,
            "--workdir",
            str(workdir),
            *OVERRIDES,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for_step(proc, workdir, step, timeout=300):
    deadline = time.time() + timeout
    while max(logged(workdir), default=0) < step:
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("training did not reach the step in time")
        time.sleep(0.2)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    train(load_config(CONFIG, OVERRIDES), reference)
    killed = tmp_path / "killed"
    proc = start(killed)
    wait_for_step(proc, killed, 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(logged(killed)) < 8
    summary = train(
        load_config(CONFIG, OVERRIDES), killed
    )  # resumes from the last finished checkpoint
    assert summary["stop_reason"] == "completed"
    assert logged(killed) == logged(reference)  # exact float equality, every step


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = start(tmp_path)
    wait_for_step(proc, tmp_path, 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    stopped_at = max(logged(tmp_path))
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] == stopped_at
