"""Draft heads on disk: one safetensors file, `draft.safetensors`, in a directory.

Tensor names are the head's parameter paths joined by '.' (`fc.kernel`, `layer.attn.q.kernel`,
`d2t` for a reduced vocabulary); the file's metadata carries the `DraftConfig` as JSON. Loading
checks every tensor's presence, shape and finiteness (`CheckpointError` naming the tensor).
The token embedding and LM head are the target's and are not stored.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from andesvl_jax.convert.safetensors_io import CheckpointError, fill_module, write_safetensors
from andesvl_jax.models.eagle import DraftConfig, DraftHead

FORMAT = "andesvl-eagle-draft"
FILE = "draft.safetensors"


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def save_draft(draft: DraftHead, directory: str | pathlib.Path) -> pathlib.Path:
    """Write `draft` to directory/draft.safetensors (created if needed) -> the file."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {_key(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(draft))}
    metadata = {"format": FORMAT, "config": json.dumps(draft.cfg.to_dict(), sort_keys=True)}
    path = directory / FILE
    write_safetensors(path, tensors, metadata)
    return path


def load_draft(directory: str | pathlib.Path) -> DraftHead:
    """The head `save_draft` wrote to `directory` (or the file itself)."""
    path = pathlib.Path(directory)
    if path.is_dir():
        path = path / FILE
    try:
        f = safe_open(path, framework="np")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable draft head ({e})") from e
    meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a draft head (metadata format={meta.get('format')!r}, expected {FORMAT!r})"
        )
    try:
        cfg = DraftConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable draft config: {type(e).__name__}: {e}") from e
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: DraftHead(cfg, rngs=nnx.Rngs(0))))
    return fill_module(path, f, graphdef, abstract)
