"""A training workdir as a checkpoint to load: its run config, tokenizer and latest model parameters.

`train` writes WORKDIR/config.json and orbax checkpoints under WORKDIR/checkpoints (train/checkpoint.py);
everything that reads a finished (or interrupted) run back — the next stage, the engine, evaluation,
export — goes through this module, so none of them has to import the training loop.
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from andesvl_jax.configs import model_config
from andesvl_jax.convert.hf_config import ConfigError
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.models.andesvl import AndesVL

RUN_CONFIG = "config.json"


def load_run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a training run in `workdir` was launched with."""
    path = pathlib.Path(workdir) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a training workdir (no {RUN_CONFIG})")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(config, dict):
            raise TypeError(f"a JSON {type(config).__name__}, expected an object")
    except (ValueError, TypeError, RecursionError) as e:  # JSON and UTF-8 errors included
        raise ConfigError(f"{path}: not a run config: {type(e).__name__}: {e}") from e
    return ml_collections.ConfigDict(config)


def run_tokenizer(config) -> TextTokenizer:
    """The run's tokenizer: data.tokenizer (a tokenizer.json), or the embedded one."""
    return (
        TextTokenizer.from_file(config.data.tokenizer)
        if config.data.tokenizer
        else TextTokenizer.default()
    )


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


def _merge_into(out: dict, tree: dict) -> None:
    """Deep-merge nested dict `tree` into `out`."""
    for key, value in tree.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            _merge_into(out[key], value)
        else:
            out[key] = value


def check_shapes(tree: dict, like: dict, source: str, path: tuple = ()) -> None:
    """Every array of `tree` has the shape of the same leaf of `like` (the model being filled):
    a run of another architecture is an error naming the tensor, never a silent mismatch."""
    for key, value in tree.items():
        target = like.get(key, like.get(int(key)) if str(key).isdigit() else None)
        if target is None:
            continue  # not in the model: nnx.replace_by_pure_dict names the key
        if isinstance(value, dict):
            check_shapes(value, target, source, (*path, key))
        elif np.shape(value) != np.shape(target):
            name = "/".join(map(str, (*path, key)))
            raise ConfigError(
                f"{source}: tensor {name} has shape {np.shape(value)}, this model expects "
                f"{np.shape(target)}: the run was trained with another architecture "
                "(set config.model to the run's)"
            )


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
    for part in ("params", "frozen"):  # both may hold parts of one module (e.g. fixed masks)
        _merge_into(pure, _unwrap(trees[part]))
    shardings = jax.tree.map(lambda x: x.sharding, full_state)
    like = full_state.to_pure_dict()
    pure = match_layer_layout(pure, like)
    check_shapes(pure, like, f"{directory / str(step)}")
    nnx.replace_by_pure_dict(full_state, pure)
    return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), full_state, shardings)


def trained_model(config, workdir: str | pathlib.Path, structure=None) -> AndesVL:
    """The model of a finished (or interrupted) run, restored from its latest checkpoint.

    structure: a function module -> module applied to the freshly built model before restoring,
    for runs that trained a changed structure (e.g. the qat stage's QuantLinears, applied by
    infer.load, which may import compress/).
    """
    model_cfg = model_config(config)
    build = structure or (lambda m: m)
    abstract = nnx.eval_shape(lambda: build(AndesVL(model_cfg, rngs=nnx.Rngs(0))))
    graphdef, abs_state = nnx.split(abstract)
    like = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(
            a.shape, a.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])
        ),
        abs_state,
    )
    return nnx.merge(graphdef, restore_model_params(workdir, like))
