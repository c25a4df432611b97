"""`andesvl-jax train --config experiments/x.py:arg --workdir DIR [--config.a.b=value ...]`.

The config is an ml_collections `get_config(arg)` file (big_vision convention) parsed with absl's
`config_flags`, so `--config.x=y` overrides are type-checked and unknown keys are rejected; ARG is
`k=v,...` checked against the file's ARGS table (andesvl_jax/configs/args.py). Every field, its
default and what unset (None) means: andesvl_jax/configs/base.py `base_config()`.
Multi-host: pass `--coordinator HOST:PORT --num-processes N --process-id I` (or set JAX's
environment variables) and every process runs the same command.
"""

from __future__ import annotations

import json
import sys


def load_config(config_arg: str, overrides: list[str]):
    """`experiments/x.py:arg` with `--config.a.b=value` overrides applied -> a locked ConfigDict.

    A bad argument or override exits (SystemExit) with the file, the item and what is expected.
    """
    from absl import flags
    from ml_collections import config_flags

    from andesvl_jax.configs import ConfigArgError

    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "experiment config", flag_values=values, lock_config=True
    )
    argv = ["andesvl-jax", f"--config={config_arg}", *overrides]
    saved, sys.argv = sys.argv, argv  # config_flags reads the `--config.x` overrides from sys.argv
    try:
        values(argv)
    except (flags.Error, AttributeError, KeyError) as e:
        raise SystemExit(f"andesvl-jax train: bad --config or override: {e}") from e
    except ConfigArgError as e:
        raise SystemExit(f"andesvl-jax train: bad --config argument: {e}") from e
    finally:
        sys.argv = saved
    return values.config


def maybe_initialize_distributed(args) -> None:
    import jax

    if args.coordinator or args.num_processes:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )


def run(args) -> int:
    maybe_initialize_distributed(args)
    from andesvl_jax.train.loop import train

    config = load_config(args.config, args.overrides)
    summary = train(config, args.workdir)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["stop_reason"] in ("completed", "SIGTERM") else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one stage from an ml_collections config")
    p.add_argument("--config", required=True, help="experiments/FILE.py[:ARG]")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, tensorboard/")
    p.add_argument("--coordinator", default=None, help="multi-host: HOST:PORT of process 0")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.set_defaults(func=run, accepts_overrides=True)
