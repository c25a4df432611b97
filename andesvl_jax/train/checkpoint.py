"""Orbax checkpoints of the whole run: TrainState (params, frozen params, optimizer, step, RNG, guards)
and the data iterator state, saved together, asynchronously, keeping the last K.

A save is atomic (orbax writes to a temporary directory and renames), so a crash mid-save leaves the
previous checkpoint intact; `latest_step` only ever sees finished ones. A save that fails (a full
disk, a write error) raises `WriteError` naming the directory and the step, after removing orbax's
temporary directory of that step (orbax itself raises its own error types and leaves it behind).
"""

from __future__ import annotations

import errno
import pathlib
import shutil

import jax
import orbax.checkpoint as ocp

from andesvl_jax.data.atomic_io import WriteError


class Checkpointer:
    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._pending: int | None = None  # the step of an asynchronous save not yet confirmed

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict, *, force: bool = False) -> None:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
        )
        try:
            self.manager.save(step, args=args, force=force)
        except Exception as e:
            raise self._failed(step, e) from e
        self._pending = step

    def _failed(self, step: int | None, error: Exception) -> WriteError:
        """The error for a save that did not finish; orbax's temporary directories removed."""
        for tmp in self.directory.glob("*.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)
        code = getattr(error, "errno", None) or errno.EIO
        return WriteError(
            code,
            f"{self.directory}: checkpoint of step {step} could not be written "
            f"({type(error).__name__}: {error}); the previous checkpoint "
            f"(step {self.manager.latest_step()}) is intact",
        )

    def restore(self, step: int, like) -> tuple[object, dict]:
        """(state, data iterator state) of `step`; `like` gives structure, dtypes and shardings."""
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
        )
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
            ),
        )
        return out["state"], out["data"]

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._failed(self._pending, e) from e
        self._pending = None

    def close(self) -> None:
        self.wait()
        self.manager.close()
