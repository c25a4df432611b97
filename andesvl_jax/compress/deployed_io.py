"""Deployed checkpoints as one safetensors file (layout: docs/formats.md §5).

Tensor names are the model's parameter paths joined by '.', one set per layer
(`llm.layers.3.attn.q.plane0`), whatever the in-memory layout; the file's metadata carries the
model config and every deployed linear's `DeployMeta` as JSON. Loading rebuilds the model with
separate layers and checks every tensor against what the config and metadata imply: a missing,
unexpected, mis-shaped or mis-typed tensor is a `CheckpointError` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from andesvl_jax.compress.deploy import (
    Deployed,
    DeployMeta,
    deployed_linears,
    deployed_metas,
    layer_value,
    skeleton,
)
from andesvl_jax.config import AndesVLConfig, replace_fields
from andesvl_jax.convert.safetensors_io import (
    CheckpointError,
    file_format,
    fill_module,
    write_safetensors,
)
from andesvl_jax.models.andesvl import AndesVL

FORMAT = "andesvl-deployed"
VERSION = "1"


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def _separate_paths(model: nnx.Module):
    """(per-layer path, abstract variable) of `model`'s state laid out with separate layers."""
    cfg = model.cfg.replace(scan_layers=False)
    target = nnx.eval_shape(lambda: skeleton(AndesVL(cfg, rngs=nnx.Rngs(0)), deployed_metas(model)))
    return target, nnx.to_flat_state(nnx.state(target))


def save_deployed(model: nnx.Module, path: str | pathlib.Path) -> pathlib.Path:
    """Write a deployed model (either layout) to `path` (a .safetensors file)."""
    metas = deployed_metas(model)
    if not metas:
        raise ValueError("not a deployed model (no DeployedLinear): run compress.deploy first")
    flat = dict(nnx.to_flat_state(nnx.state(model)))
    _, abstract = _separate_paths(model)
    tensors = {_key(p): np.asarray(layer_value(flat, tuple(p))) for p, _ in abstract}
    cfg = dataclasses.asdict(model.cfg.replace(scan_layers=False))
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(cfg, sort_keys=True),
        "linears": json.dumps({n: dataclasses.asdict(m) for n, m in metas.items()}, sort_keys=True),
    }
    path = pathlib.Path(path)
    write_safetensors(path, tensors, metadata)
    return path


def _metadata(path: pathlib.Path, f) -> tuple[AndesVLConfig, dict[str, DeployMeta]]:
    meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a deployed AndesVL checkpoint (metadata format={meta.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: deployed format version {meta.get('version')!r}; expected {VERSION}"
        )
    try:
        config, linears = json.loads(meta["config"]), json.loads(meta["linears"])
        if not isinstance(config, dict) or not isinstance(linears, dict):
            raise TypeError("config and linears must be JSON objects")
        cfg = replace_fields(AndesVLConfig(), config).validate()
        linears = {n: DeployMeta(**d) for n, d in linears.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: unreadable config/linears metadata: {type(e).__name__}: {e}"
        ) from e
    return cfg, linears


def is_deployed_file(path: str | pathlib.Path) -> bool:
    """Whether `path` is a safetensors file whose metadata says it is a deployed checkpoint."""
    return file_format(path) == FORMAT


def load_deployed(path: str | pathlib.Path, *, dtype: str | None = None) -> nnx.Module:
    """A deployed model (separate layers) from `save_deployed`'s file; dtype overrides the compute
    dtype in the saved config."""
    path = pathlib.Path(path)
    try:
        f = safe_open(path, framework="np")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    cfg, linears = _metadata(path, f)
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype)
    try:  # a config that validates may still not build (e.g. a zero width)
        target = nnx.eval_shape(lambda: skeleton(AndesVL(cfg, rngs=nnx.Rngs(0)), linears))
    except (ArithmeticError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: the metadata's config and linears do not build a deployed model "
            f"({type(e).__name__}: {e})"
        ) from e
    missing = sorted(set(linears) - {n for _, names, _ in deployed_linears(target) for n in names})
    if missing:
        raise CheckpointError(
            f"{path}: metadata names linears the model does not have: {missing[:5]}"
        )
    graphdef, abstract = nnx.split(target)
    return fill_module(path, f, graphdef, abstract, lambda var: isinstance(var, Deployed))
