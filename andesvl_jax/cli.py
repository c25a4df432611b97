"""One entry point: `andesvl-jax <command>` (also `python -m andesvl_jax`).

Each command lives in its own module that defines `register(subparsers)`; the parser it adds sets
`func(args) -> int`. Adding a command = adding its module path to COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "andesvl_jax.eval.verify_import",
    "andesvl_jax.jobs.demo",
    "andesvl_jax.jobs.demo_post",
    "andesvl_jax.jobs.quantize",
    "andesvl_jax.jobs.eval_quant",
    "andesvl_jax.jobs.demo_ondevice",
    "andesvl_jax.train.launch",
    "andesvl_jax.train.compile_check_cli",
    "andesvl_jax.data.inspect_cli",
    "andesvl_jax.infer.chat_cli",
    "andesvl_jax.agent.cli",
    "andesvl_jax.eval.cli",
    "andesvl_jax.eval.ablate_cli",
    "andesvl_jax.eval.long_context_cli",
    "andesvl_jax.compress.cli",
    "andesvl_jax.export.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="andesvl-jax", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra  # `--config.a.b=value` overrides for commands that take a config
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
