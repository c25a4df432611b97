"""`andesvl-jax compress <tool>`: inspection tools for compressed checkpoints (COMPRESS_TOOLS)."""

from __future__ import annotations

import importlib

COMPRESS_TOOLS = [
    "andesvl_jax.compress.sparse_bpw",
    "andesvl_jax.compress.sparse_export",
]  # each module defines register(subparsers)


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="compressed checkpoints: bpw, export-sparse")
    tools = p.add_subparsers(dest="compress_tool", required=True)
    for name in COMPRESS_TOOLS:
        importlib.import_module(name).register(tools)
