"""Load HF / official AndesVL safetensors into our NNX modules (sharded, lazily) and export them back.

Loading never builds the model's random weights: the module is created abstractly (`nnx.eval_shape`),
each parameter is produced from the checkpoint by its key-map rule, and with a mesh it is placed
straight into its target sharding with `jax.make_array_from_callback` — each device's shard reads
only its slice (for scanned layers, only its layers) from the file (`safetensors` `get_slice`; rules
that mix tensors, such as a fused qkv, read the whole tensor and slice it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from andesvl_jax.config import AndesVLConfig
from andesvl_jax.convert.hf_config import official_config, read_config
from andesvl_jax.convert.keymaps import KEYMAPS, KeyMap, Rule
from andesvl_jax.convert.safetensors_io import (
    CheckpointError,
    SafetensorsReader,
    require_finite,
    write_safetensors,
)
from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.models.andesvl import AndesVL, run_options
from andesvl_jax.models.qwen3 import Qwen3
from andesvl_jax.models.vit import VisionEncoder
from andesvl_jax.sharding import DEFAULT_RULES, LogicalRules, state_shardings

MODULES: dict[str, Callable[[AndesVLConfig, nnx.Rngs], nnx.Module]] = {
    "andesvl": lambda cfg, rngs: AndesVL(cfg, rngs=rngs),
    "llm": lambda cfg, rngs: Qwen3(cfg.text, rngs=rngs, **run_options(cfg)),
    "vision": lambda cfg, rngs: VisionEncoder(cfg.vision, rngs=rngs, **run_options(cfg)),
}


@dataclasses.dataclass(frozen=True)
class LoadReport:
    model_type: str
    config: AndesVLConfig
    loaded: int  # checkpoint tensors used
    ignored: tuple[str, ...]  # checkpoint tensors that exist but this model does not use


@dataclasses.dataclass(frozen=True)
class _Placed:
    """One concrete rule application: rule, its layer index, their keys, our flat paths."""

    rule: Rule
    layer: int | None
    theirs: tuple[str, ...]
    ours: tuple[str, ...]


def _expand(keymap: KeyMap, cfg: AndesVLConfig) -> list[_Placed]:
    layers = {"vision": cfg.vision.num_layers, "text": cfg.text.num_layers}
    placed = []
    for rule in keymap.rules:
        for i in range(layers[rule.tower]) if rule.tower else [None]:
            theirs = tuple(t.format(i=i) for t in rule.theirs)
            if i is None or not cfg.scan_layers:
                ours = tuple(o.format(i=i) for o in rule.ours)
            else:
                ours = tuple(o.replace("{i}.", "") for o in rule.ours)
            placed.append(_Placed(rule, i if cfg.scan_layers else None, theirs, ours))
    return placed


def _flat(state: nnx.State) -> dict[str, nnx.Variable]:
    return {".".join(str(p) for p in path): var for path, var in nnx.to_flat_state(state)}


def _abstract(module: str, cfg: AndesVLConfig):
    return nnx.split(nnx.eval_shape(lambda: MODULES[module](cfg, nnx.Rngs(0))))


def load_checkpoint(
    directory: str | pathlib.Path,
    *,
    overrides: dict | None = None,
    mesh: Mesh | None = None,
    rules: LogicalRules = DEFAULT_RULES,
):
    """(module, LoadReport) from a local checkpoint directory (config.json + *.safetensors).

    overrides: AndesVLConfig fields to change (execution options such as scan_layers, param_dtype, or
    e.g. a `vision` config with another activation). With `mesh`, parameters are created sharded.
    """
    directory = pathlib.Path(directory)
    model_type, cfg = read_config(directory)
    cfg = cfg.replace(**(overrides or {})).validate()
    reader = SafetensorsReader(directory)
    keymap = KEYMAPS[model_type](cfg, tuple(reader.keys()))
    graphdef, abstract = _abstract(keymap.module, cfg)
    targets = _flat(abstract)
    placed = _expand(keymap, cfg)

    wanted = {key for p in placed for key in p.theirs}
    missing = sorted(wanted - set(reader.keys()))
    if missing:
        raise CheckpointError(
            f"{directory}: missing tensors for model_type {model_type!r}: {missing[:8]}"
            + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        )
    extra = [k for k in reader.keys() if k not in wanted and not keymap.is_ignored(k)]
    if extra:
        raise CheckpointError(
            f"{directory}: unexpected tensors for model_type {model_type!r} "
            f"(config and weights disagree?): {extra[:8]}"
        )

    sources: dict[str, dict[int | None, tuple[_Placed, int]]] = {}
    load_shapes = functools.cache(_load_shapes)  # the layers of a tower repeat the same shapes
    for p in placed:
        shapes = tuple(reader.shape(k) for k in p.theirs)
        try:
            arrays = load_shapes(p.rule, shapes)
        except (IndexError, ValueError, TypeError) as e:  # e.g. a 0-d tensor where a matrix goes
            raise CheckpointError(
                f"{directory}: tensor(s) {list(p.theirs)} of shape(s) {list(shapes)} cannot be "
                f"converted to {list(p.ours)}: {type(e).__name__}: {e}"
            ) from None
        for j, (path, arr) in enumerate(zip(p.ours, arrays, strict=True)):
            if path not in targets:
                raise CheckpointError(
                    f"key map error: {p.theirs} -> {path!r}, which the model does not have"
                )
            want = (
                targets[path].get_value().shape[1:]
                if p.layer is not None
                else targets[path].get_value().shape
            )
            if tuple(arr.shape) != tuple(want):
                raise CheckpointError(
                    f"{directory}: tensor {p.theirs[0]} {reader.shape(p.theirs[0])} gives "
                    f"{path} of shape {tuple(arr.shape)}, but the config expects {tuple(want)}"
                )
            sources.setdefault(path, {})[p.layer] = (p, j)
    uncovered = sorted(set(targets) - set(sources))
    if uncovered:
        raise CheckpointError(f"{directory}: no checkpoint tensor provides {uncovered[:8]}")

    def finite(key: str, index) -> np.ndarray:
        arr = reader.read(key, index)
        if arr.dtype.kind not in "fV":  # float16/32/64, or ml_dtypes' bfloat16 / float8 ('V')
            raise CheckpointError(
                f"{directory}: tensor {key} has dtype {arr.dtype}; expected floating-point weights"
            )
        return require_finite(arr, str(directory), key)

    def produce(path: str, layer: int | None, index: tuple[slice, ...]) -> np.ndarray:
        p, j = sources[path][layer]
        if p.rule.theirs_index is not None:
            return p.rule.load(finite(p.theirs[0], p.rule.theirs_index(index)))[j]
        return p.rule.load(*(finite(k, None) for k in p.theirs))[j][index]

    shardings = _flat(state_shardings(abstract, mesh, rules)) if mesh is not None else {}
    values = {}
    for path, var in targets.items():
        shape, dtype = var.get_value().shape, var.get_value().dtype
        stacked = None not in sources[path]

        def read(index, path=path, stacked=stacked, dtype=dtype, shape=shape):
            if stacked:
                layers = range(shape[0])[index[0]]
                return np.stack([produce(path, i, index[1:]) for i in layers]).astype(dtype)
            return np.asarray(produce(path, None, index)).astype(dtype)

        if path in shardings:
            values[path] = jax.make_array_from_callback(shape, shardings[path], read)
        else:
            values[path] = jnp.asarray(read((slice(None),) * len(shape)))
    state = nnx.from_flat_state(
        [
            (tuple(_split_path(k)), abstract_var.replace(values[k]))
            for k, abstract_var in targets.items()
        ]
    )
    used = len(wanted)
    ignored = tuple(k for k in reader.keys() if k not in wanted)
    return nnx.merge(graphdef, state), LoadReport(model_type, cfg, used, ignored)


def _load_shapes(rule: Rule, shapes: tuple[tuple[int, ...], ...]):
    """The shapes `rule.load` gives for their tensors of `shapes`, without reading them."""
    return jax.eval_shape(
        lambda *ws: rule.load(*ws), *(jax.ShapeDtypeStruct(s, np.float32) for s in shapes)
    )


def _split_path(dotted: str) -> list:
    return [int(p) if p.isdigit() else p for p in dotted.split(".")]


def export_official(model: AndesVL, directory: str | pathlib.Path) -> None:
    """Write `model` as an official AndesVL checkpoint (config.json + model.safetensors)."""
    cfg = model.cfg
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_type = f"andesvl-{cfg.vision.flavour}-qwen3"
    flat = {
        k: np.asarray(jax.device_get(v.get_value()))
        for k, v in _flat(nnx.state(model, nnx.Param)).items()
    }
    tensors = {}
    for p in _expand(KEYMAPS[model_type](cfg, ()), cfg):
        ours = [flat[o] if p.layer is None else flat[o][p.layer] for o in p.ours]
        for key, arr in zip(p.theirs, p.rule.save(*ours), strict=True):
            tensors[key] = arr
    # Each file is replaced atomically, weights first: a kill leaves complete files only.
    write_safetensors(directory / "model.safetensors", tensors)
    atomic_write_text(directory / "config.json", json.dumps(official_config(cfg), indent=2) + "\n")
