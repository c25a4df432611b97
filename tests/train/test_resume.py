"""A run killed with SIGKILL after a checkpoint and resumed ends bit-identical to an uninterrupted
run: every logged metric of every step and every leaf of the final TrainState (optimizer, RNG, MPO's
BCO delta, the frozen reference) and data state (the data position with prefetch workers on, the
GRPO rollout cursor). SIGTERM saves and exits.

The killed run is a subprocess (tests/train/resume_worker.py) in its own session that SIGKILLs its
whole process group (grain's prefetch workers too, as a preempted machine loses them) one logged
step after a checkpoint, so the resumed run replays uncheckpointed work.
"""

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from andesvl_jax.train.loop import train

WORKER = pathlib.Path(__file__).with_name("resume_worker.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(WORKER.parent))
from resume_worker import COMMON, SFT, run_config  # noqa: E402

# wall-clock metrics, the only ones a resumed run may log differently
TIMING = {"tokens_per_s", "step_time_s", "mfu"}


def logged(workdir) -> dict[int, dict]:
    """step -> its metrics, the last record of each step (a resumed run re-logs replayed steps)."""
    path = workdir / "metrics.jsonl"
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = {k: v for k, v in rec.items() if k not in TIMING}
    return out


def finished_checkpoints(workdir) -> list[int]:
    """Steps of the complete checkpoints (orbax renames a save to its step only once written)."""
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def saved(workdir, step) -> tuple[dict[str, np.ndarray], dict]:
    """(every leaf of the checkpointed TrainState by path, the data iterator state) at `step`."""
    d = workdir / "checkpoints" / str(step)
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(d / "state")
    leaves = jax.tree_util.tree_leaves_with_path(state)
    arrays = {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}
    return arrays, json.loads((d / "data" / "metadata").read_text())


def _env():
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def wait_until(proc, done, what, timeout=600):
    deadline = time.time() + timeout
    while not done():
        if proc.poll() is not None:
            pytest.fail(f"training exited before {what}: {proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"training did not reach {what} in {timeout} s")
        time.sleep(0.1)


def killed_after_checkpoint(scenario: str, steps: int, at: int, workdir) -> None:
    """Run the scenario in a subprocess (its own session) that SIGKILLs itself and its workers
    once checkpoint `at` is complete and step at + 1 is logged (resume_worker.py)."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), scenario, str(steps), str(workdir), str(at)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a worker left behind, if any
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert finished_checkpoints(workdir)[-1] == at and max(logged(workdir)) == at + 1


def assert_same_run(reference, resumed, steps):
    """Every step's metrics and the final checkpoint's every leaf and data state, exactly."""
    want, got = logged(reference), logged(resumed)
    assert sorted(got) == list(range(1, steps + 1))
    assert got == want  # exact float equality, every metric of every step
    (ref_state, ref_data), (state, data) = saved(reference, steps), saved(resumed, steps)
    assert data == ref_data
    assert state.keys() == ref_state.keys()
    for path, x in ref_state.items():
        assert state[path].dtype == x.dtype and np.array_equal(state[path], x), path
    return state, data


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["sft", "sft_workers"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, scenario):
    """SFT, with the data pipeline in-process and with 2 grain prefetch worker processes."""
    steps = 8
    train(run_config(scenario, steps), tmp_path / "reference")
    killed = tmp_path / "killed"
    killed_after_checkpoint(scenario, steps, 4, killed)
    _, data_at_kill = saved(killed, 4)
    _, ref_data_then = saved(tmp_path / "reference", 4)
    assert data_at_kill == ref_data_then  # the data position saved, worker states included
    summary = train(run_config(scenario, steps), killed)  # resumes from the last checkpoint
    assert summary["stop_reason"] == "completed"
    assert_same_run(tmp_path / "reference", killed, steps)


DELTA_SUM, DELTA_COUNT = "['extra']['delta']['sum']", "['extra']['delta']['count']"


@pytest.mark.slow
def test_mpo_sigkill_then_resume_restores_the_bco_delta(tmp_path):
    steps = 8
    train(run_config("mpo", steps), tmp_path / "reference")
    killed = tmp_path / "killed"
    killed_after_checkpoint("mpo", steps, 4, killed)
    at_kill, _ = saved(killed, 4)
    # the delta carried over the kill is a real running mean, not the initial 0 / 0
    assert at_kill[DELTA_COUNT] == 4 and at_kill[DELTA_SUM] != 0
    train(run_config("mpo", steps), killed)
    state, _ = assert_same_run(tmp_path / "reference", killed, steps)
    assert state[DELTA_COUNT] == steps  # every batch folded in exactly once


@pytest.mark.slow
def test_grpo_sigkill_then_resume_restores_the_rollout_cursor(tmp_path):
    """Rounds of 2 steps (updates_per_rollout 2): killed after round 0, the resumed run samples
    round 1's prompts from the restored policy, as the uninterrupted run did."""
    steps = 4
    train(run_config("grpo", steps), tmp_path / "reference")
    killed = tmp_path / "killed"
    killed_after_checkpoint("grpo", steps, 2, killed)
    assert saved(killed, 2)[1] == {"round": 1}  # round 0 served, round 1 next
    train(run_config("grpo", steps), killed)
    _, data = assert_same_run(tmp_path / "reference", killed, steps)
    assert data == {"round": 2}
    # the rollouts were scored (non-zero advantages), so the policy and its samples moved
    assert len({rec["mean_reward"] for rec in logged(killed).values()}) > 1


CLI_OVERRIDES = ["--config.steps=8", *COMMON, "--config.data.worker_count=0", *SFT]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "andesvl_jax", "train", "--config", "experiments/tiny.py:stage=sft"]
        + ["--workdir", str(tmp_path), *CLI_OVERRIDES],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(proc, lambda: max(logged(tmp_path), default=0) >= 3, "step 3")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    stopped_at = max(logged(tmp_path))
    saved_steps = finished_checkpoints(tmp_path)
    assert saved_steps and saved_steps[-1] == stopped_at
