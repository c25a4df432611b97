"""Two processes x 4 CPU devices (jax.distributed, gloo collectives) match one process x 8 devices:
supervised steps, and GRPO with each process sampling its share of the rollouts."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

WORKER = pathlib.Path(__file__).with_name("multihost_worker.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(mode, process_id, num_processes, port, out, devices):
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            mode,
            str(process_id),
            str(num_processes),
            str(port),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(procs):
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out.decode()[-3000:]


def test_two_processes_match_one(tmp_path):
    single = tmp_path / "single.json"
    finish([launch("sft", 0, 1, free_port(), single, 8)])
    multi = tmp_path / "multi.json"
    port = free_port()
    finish([launch("sft", i, 2, port, multi, 4) for i in range(2)])
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    assert (a["devices"], a["processes"], b["devices"], b["processes"]) == (8, 1, 8, 2)
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5, atol=1e-5)


def metrics(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if "loss" in m]


def test_grpo_rollouts_split_over_processes_match_one(tmp_path):
    finish([launch("grpo", 0, 1, free_port(), tmp_path / "single", 8)])
    port = free_port()
    finish([launch("grpo", i, 2, port, tmp_path / "multi", 4) for i in range(2)])
    a, b = metrics(tmp_path / "single"), metrics(tmp_path / "multi")
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2]
    rewards = [m["mean_reward"] for m in a]
    assert all(0 < r < 1 for r in rewards), rewards  # the groups carry a learning signal
    for key in ("loss", "mean_reward", "kl", "ratio"):
        np.testing.assert_allclose([m[key] for m in a], [m[key] for m in b], rtol=1e-5, atol=1e-6)
