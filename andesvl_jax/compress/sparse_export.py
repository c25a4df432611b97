"""A finished `sparse` stage run -> its pruned model and the packed file (`andesvl-jax compress
export-sparse WORKDIR OUT`): the checkpoint restored into the sparse structure (SparseLinears with
their masks and step sizes), then written by `sparse_io.save_sparse` — exactly what was trained."""

from __future__ import annotations

import pathlib

from andesvl_jax.compress.prune import sparse_structure
from andesvl_jax.compress.sparse_io import save_sparse
from andesvl_jax.convert.workdir import load_run_config, trained_model
from andesvl_jax.models.andesvl import AndesVL


def sparse_trained_model(workdir: str | pathlib.Path, config=None) -> AndesVL:
    """The pruned, LSQ-quantized model of a `sparse` stage run (its latest checkpoint)."""
    config = load_run_config(workdir) if config is None else config
    if config.stage != "sparse":
        raise ValueError(f"{workdir}: a {config.stage!r} run, not a sparse stage run")
    s = config.sparse
    return trained_model(config, workdir, sparse_structure(s.bits, s.group))


def run(args) -> int:
    path = save_sparse(sparse_trained_model(args.workdir), args.out, args.target_bpw)
    print(f"wrote {path} ({path.stat().st_size} bytes); see `andesvl-jax compress bpw {path}`")
    return 0


def register(compress_subparsers) -> None:
    p = compress_subparsers.add_parser(
        "export-sparse", help="write a sparse stage run's pruned model as a packed .safetensors"
    )
    p.add_argument("workdir", help="the sparse stage's workdir")
    p.add_argument("out", help="output .safetensors path")
    p.add_argument("--target-bpw", type=float, help="fail if a tensor's pattern cannot reach it")
    p.set_defaults(func=run)
