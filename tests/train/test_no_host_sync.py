"""The step loop waits on the device only at sync steps (log, save, last): no device->host read in
between, and the non-finite guard still stops a run, from on-device counters read at those steps."""

import contextlib
import json

import jax
import jax.numpy as jnp
import pytest
from jax._src.array import ArrayImpl

from andesvl_jax.train.loop import BadStepWatch, NonFiniteError, train


@contextlib.contextmanager
def no_device_reads():
    """Fail on any device->host read. `transfer_guard_device_to_host` enforces it on GPU/TPU; XLA:CPU
    arrays are read zero-copy and bypass the guard (jax-ml/jax#16602), so on CPU every read of an
    array's value (float(), int(), np.asarray, device_get, block_until_ready) is trapped too."""

    def trap(self, *_):
        raise AssertionError(f"device->host read of a {self.dtype}{list(self.shape)} jax.Array")

    value, block = ArrayImpl._value, ArrayImpl.block_until_ready
    ArrayImpl._value, ArrayImpl.block_until_ready = property(trap), trap
    try:
        with jax.transfer_guard_device_to_host("disallow"):
            yield
    finally:
        ArrayImpl._value, ArrayImpl.block_until_ready = value, block


def guarded_steps(log: list):
    """A `train(step_context=...)` that records each step's `syncs` and guards the others."""

    def context(syncs: bool):
        log.append(syncs)
        return contextlib.nullcontext() if syncs else no_device_reads()

    return context


def test_the_guard_catches_a_read():
    x = jnp.arange(3.0) * 2
    for read in (lambda: float(x[0]), lambda: jax.device_get(x), lambda: x.block_until_ready()):
        with pytest.raises(Exception, match="device->host"), no_device_reads():
            read()
    assert float(x[1]) == 2.0  # restored afterwards


def test_steps_between_log_steps_do_not_read_the_device(make_config, tmp_path):
    config = make_config(steps=6, log_every=3, save_every=6)
    syncs = []
    summary = train(config, tmp_path, step_context=guarded_steps(syncs))
    assert syncs == [False, False, True, False, False, True]
    assert summary["stop_reason"] == "completed" and summary["steps"] == 6
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "loss" in x]
    assert [x["step"] for x in logged] == [3, 6]
    assert all(x["tokens_per_s"] > 0 and x["finite"] == 1.0 for x in logged)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("[0-9]*")) == ["6"]


def test_non_finite_guard_stops_the_run_between_log_steps(make_config, tmp_path):
    config = make_config(steps=8, log_every=4, save_every=100, max_bad_steps=2)
    config.optim.lr = float("nan")  # every update is non-finite
    syncs = []
    with pytest.raises(
        NonFiniteError, match=r"step 2: 2 non-finite steps in a row \(seen at step 4"
    ):
        train(config, tmp_path, step_context=guarded_steps(syncs))
    assert syncs == [False, False, False, True]
    assert not any((tmp_path / "checkpoints").glob("[0-9]*"))


def test_bad_step_watch_catches_a_run_that_ended_before_the_check():
    watch = BadStepWatch(limit=3, bad_steps=1)  # resumed one bad step into a run
    for step, finite in enumerate([False, False, True, True], start=1):  # 3 bad, then good again
        watch.record(step, jnp.asarray(finite))
    assert watch.check() == (2, 0)
    for step, finite in [(5, False), (6, True), (7, False), (8, False)]:
        watch.record(step, jnp.asarray(finite))
    assert watch.check() == (None, 2)  # never 3 in a row; the latest state is bad: not saved
    watch.record(9, jnp.asarray(False))
    assert watch.check() == (9, 3)  # the run goes on across checks
