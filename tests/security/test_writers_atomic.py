"""Nothing lost on faults: every writer replaces its file atomically (temporary name, fsync,
rename), so a SIGKILL mid-write or a full disk leaves the previous complete file.

Writers: convert's safetensors export (write_safetensors / export_official), evaluation reports
(results.json/.md/.png), orbax training checkpoints (orbax's own tmp dir + rename, verified here),
and the predictions JSONL (append-only by design: a torn last line is dropped and regenerated).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from writer_worker import orbax_payload, prediction_samples, predictions

from andesvl_jax.convert import safetensors_io
from andesvl_jax.convert.safetensors_io import CheckpointError, SafetensorsReader, write_safetensors
from andesvl_jax.data.atomic_io import WriteError, atomic_write_text
from andesvl_jax.train.checkpoint import Checkpointer

WORKER = pathlib.Path(__file__).with_name("writer_worker.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _spawn(kind: str, path: pathlib.Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), kind, str(path), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _kill_mid_write(proc: subprocess.Popen, writing, timeout: float = 120.0) -> None:
    """Wait for 'ready', then until `writing()` says a write is under way, then SIGKILL."""
    try:
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()[-2000:]
        deadline = time.monotonic() + timeout
        while not writing():
            assert time.monotonic() < deadline, "the writer never started a second write"
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _tmp_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in directory.iterdir() if ".tmp-" in p.name]


def _one_generation(arr: np.ndarray) -> int:
    values = np.unique(arr)
    assert len(values) == 1, f"a mix of generations: {values[:5]}"
    return int(values[0])


def test_safetensors_export_survives_sigkill_mid_write(tmp_path):
    path = tmp_path / "model.safetensors"
    proc = _spawn("safetensors", path)
    _kill_mid_write(proc, lambda: bool(_tmp_files(tmp_path)))
    reader = SafetensorsReader(tmp_path)  # the previous complete file, whatever generation
    _one_generation(reader.read("w"))


def test_reports_survive_sigkill_mid_write(tmp_path):
    out = tmp_path / "eval"
    proc = _spawn("reports", out)
    _kill_mid_write(proc, lambda: out.is_dir() and bool(_tmp_files(out)))
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["pad"]) == {"x"} and isinstance(summary["gen"], int)


def test_orbax_checkpoint_survives_sigkill_mid_save(tmp_path):
    directory = tmp_path / "ckpt"
    proc = _spawn("orbax", directory)
    _kill_mid_write(proc, lambda: any("tmp" in p.name for p in directory.iterdir()), timeout=300)
    ckpt = Checkpointer(directory, async_save=False)
    step = ckpt.latest_step()
    assert step is not None  # step 0 at least: a finished checkpoint survives
    want = orbax_payload(step, 1 if step == 0 else 64)
    state, data = ckpt.restore(step, {"w": jax.device_put(np.zeros_like(want))})
    np.testing.assert_array_equal(np.asarray(state["w"]), want)
    assert data["gen"] == step
    ckpt.close()


def test_predictions_jsonl_survives_sigkill_and_resumes(tmp_path):
    from andesvl_jax.eval.runner import read_predictions

    path = tmp_path / "predictions" / "bench.jsonl"
    proc = _spawn("predictions", path)
    _kill_mid_write(proc, lambda: path.is_file() and path.stat().st_size > 20_000)
    records, dropped = read_predictions(path)  # a torn last line is dropped, the file rewritten
    n = len(records)
    assert n > 0 and sorted(records) == list(range(n)) and dropped <= 1
    result = predictions(path, n + 12)  # the next run resumes where the killed one stopped
    assert result["generated"] == 12 and sorted(result["records"]) == list(range(n + 12))
    assert prediction_samples(1)[0].answer == "yes"


@pytest.mark.parametrize("kind", ["safetensors", "reports", "orbax"])
def test_full_disk_gives_a_clear_error_and_keeps_the_last_good_file(tmp_path, kind):
    path = tmp_path / {"safetensors": "m.safetensors", "reports": "eval", "orbax": "ckpt"}[kind]
    proc = _spawn(kind, path, "diskfull")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["error"] is not None, "the write past the size limit must fail"
    if kind == "safetensors":
        assert result["error"] == "CheckpointError" and "m.safetensors" in result["message"]
        assert "previous file is intact" in result["message"]
        assert _one_generation(SafetensorsReader(tmp_path).read("w")) == 0
        assert not _tmp_files(tmp_path)
    elif kind == "reports":
        assert result["error"] == "WriteError" and "results.json" in result["message"]
        assert json.loads((path / "results.json").read_text())["gen"] == 0
        assert not _tmp_files(path)
    else:
        assert result["error"] == "WriteError" and str(path) in result["message"], result
        assert "step 1 could not be written" in result["message"], result
        assert "previous checkpoint (step 0) is intact" in result["message"], result
        assert not list(path.glob("*orbax-checkpoint-tmp*")), list(path.iterdir())
        ckpt = Checkpointer(path, async_save=False)
        assert ckpt.latest_step() == 0, result
        want = orbax_payload(0, 1)
        state, _ = ckpt.restore(0, {"w": jax.device_put(np.zeros_like(want))})
        np.testing.assert_array_equal(np.asarray(state["w"]), want)
        ckpt.close()


def test_simulated_write_error_keeps_the_previous_safetensors(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"w": np.zeros(8, np.float32)})

    def half_then_enospc(tensors, filename, metadata=None):
        pathlib.Path(filename).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors_io, "save_file", half_then_enospc)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: write failed \(No space"):
        write_safetensors(path, {"w": np.ones(8, np.float32)})
    assert (SafetensorsReader(tmp_path).read("w") == 0).all()
    assert not _tmp_files(tmp_path)


def test_simulated_write_error_keeps_the_previous_report(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_text(path, '{"ok": 1}')
    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WriteError, match=r"results\.json: write failed"):
        atomic_write_text(path, '{"ok": 2}')
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert not _tmp_files(tmp_path)
