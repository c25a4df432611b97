"""`andesvl-jax export <target>`: write a model in an on-device runtime's format (EXPORT_TARGETS)."""

from __future__ import annotations

import importlib

EXPORT_TARGETS: list[str] = [  # each module defines register(subparsers)
    "andesvl_jax.export.gguf",
    "andesvl_jax.export.litert_cli",
    "andesvl_jax.export.verify",
]


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export to on-device runtimes (GGUF, LiteRT-LM) and verify")
    targets = p.add_subparsers(dest="export_target", required=True)
    for name in EXPORT_TARGETS:
        importlib.import_module(name).register(targets)
