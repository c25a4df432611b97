"""Orbax checkpoints of the whole run: TrainState (params, frozen params, optimizer, step, RNG, guards)
and the data iterator state, saved together, asynchronously, keeping the last K.

A save is atomic (orbax writes to a temporary directory and renames), so a crash mid-save leaves the
previous checkpoint intact; `latest_step` only ever sees finished ones.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx


class Checkpointer:
    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict, *, force: bool = False) -> None:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
        )
        self.manager.save(step, args=args, force=force)

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
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _unwrap(tree):
    """Orbax stores an nnx Variable as {'value': array}; a pure dict has the array itself."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {k: _unwrap(v) for k, v in tree.items()}
    return tree


def _is_per_layer(tree) -> bool:
    return isinstance(tree, dict) and bool(tree) and all(str(k).isdigit() for k in tree)


def match_layer_layout(tree: dict, like: dict) -> dict:
    """`tree` with every `layers` stack in the layout of `like`: stacked arrays with a leading layer
    axis (scan_layers=True) or one subtree per layer (scan_layers=False). A stage may switch layouts.
    """
    if not isinstance(tree, dict) or not isinstance(like, dict):
        return tree
    out = {}
    for key, value in tree.items():
        target = like.get(key, like.get(int(key)) if str(key).isdigit() else None)
        if key == "layers" and _is_per_layer(value) != _is_per_layer(target):
            if _is_per_layer(value):  # per-layer -> stacked
                rows = [value[k] for k in sorted(value, key=int)]
                value = jax.tree.map(lambda *a: np.stack(a), *rows)
            else:  # stacked -> per-layer
                value = {i: jax.tree.map(lambda a, i=i: a[i], value) for i in range(len(target))}
        out[key] = match_layer_layout(value, target)
    return out


def restore_model_params(workdir: str | pathlib.Path, full_state: nnx.State) -> nnx.State:
    """Fill `full_state` (every parameter of the model) from the latest checkpoint of another run.

    Works whatever the other run's trainable/frozen split was (e.g. `align` -> `joint`) and whichever
    layer layout it used (`match_layer_layout`). The arrays are read on the host, then placed into
    `full_state`'s shardings.
    """
    directory = pathlib.Path(workdir).absolute() / "checkpoints"
    manager = ocp.CheckpointManager(directory)
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{directory}: no finished checkpoint to start from")
    raw = ocp.PyTreeCheckpointer().restore(directory / str(step) / "state")
    trees = raw if isinstance(raw, dict) else raw._asdict()
    pure = {}
    for part in ("params", "frozen"):
        pure.update(_unwrap(trees[part]))
    shardings = jax.tree.map(lambda x: x.sharding, full_state)
    nnx.replace_by_pure_dict(full_state, match_layer_layout(pure, full_state.to_pure_dict()))
    return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), full_state, shardings)
