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
import traceback


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
        raise SystemExit(
            f"andesvl-jax train: bad --config or override ({config_arg}): {_short(config_arg, e)}"
        ) from e
    except ConfigArgError as e:
        raise SystemExit(f"andesvl-jax train: bad --config argument: {e}") from e
    except SystemExit as e:  # sys.exit() inside the config file
        raise SystemExit(
            f"andesvl-jax train: {_where(config_arg, e)} (exit status {e.code!r})"
        ) from e
    except Exception as e:  # noqa: BLE001 - the config file is user code: say where it failed
        raise SystemExit(f"andesvl-jax train: {_where(config_arg, e)}") from e
    finally:
        sys.argv = saved
    return values.config


def _where(config_arg: str, e: BaseException) -> str:
    """'FILE:LINE: the config file raised TYPE: message' (innermost frame in the config file)."""
    path = config_arg.split(":", 1)[0]
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(path)]
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else path
    if isinstance(e, SyntaxError) and e.lineno:
        where = f"{e.filename or path}:{e.lineno}"
    return f"{where}: the config file raised {type(e).__name__}: {e}"


def _short(config_arg: str, e: BaseException) -> str:
    """The flag error, with config_flags' embedded traceback cut to 'FILE:LINE: last line'."""
    text = str(e)
    if "Traceback (most recent call last)" not in text:
        return text
    path = config_arg.split(":", 1)[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    where = [ln for ln in lines if ln.startswith("File ") and path in ln]
    loc = ""
    if where:  # 'File "/x/cfg.py", line 5, in get_config'
        parts = where[-1].split(",")
        loc = f"{parts[0][5:].strip(chr(34))}:{parts[1].split()[-1]}: "
    return f"{loc}the config file raised {lines[-1]}"


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
