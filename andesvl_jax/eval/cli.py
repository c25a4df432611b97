"""`andesvl-jax eval --checkpoint PATH --benchmarks a,b [--data NAME=FORMAT:PATH ...]`.

Benchmark names are synthetic suite names (eval/suite.py), `synthetic` for the whole suite, or the
NAME of a `--data NAME=FORMAT:PATH` file (FORMAT a key of eval.readers.READERS, e.g.
`--data mmbench=vlmeval_tsv:/data/MMBench_DEV_EN.tsv`); every `--data` file is evaluated even if
`--benchmarks` does not list it. Without either, the whole synthetic suite runs. Predictions,
results.json/.md/.png go to --out; a rerun with the same --out resumes. Prints the results table.
"""

from __future__ import annotations

import argparse
import pathlib

SUITE_ALIAS = "synthetic"


def parse_data(spec: str) -> tuple[str, str, str]:
    """'NAME=FORMAT:PATH' -> (name, format, path)."""
    name, sep, rest = spec.partition("=")
    fmt, sep2, path = rest.partition(":")
    if not (sep and sep2 and name and fmt and path):
        raise argparse.ArgumentTypeError(
            f"--data {spec!r}: expected NAME=FORMAT:PATH, e.g. mmbench=vlmeval_tsv:MMBench.tsv"
        )
    return name, fmt, path


def benchmark_names(requested: str | None, data: dict[str, tuple[str, str]]) -> list[str]:
    """The names to run, in order: --benchmarks (with `synthetic` expanded), then --data files."""
    from andesvl_jax.eval.suite import SYNTHETIC_BENCHMARKS

    asked = [n.strip() for n in (requested or "").split(",") if n.strip()]
    if not asked and not data:
        asked = [SUITE_ALIAS]
    names: list[str] = []
    for name in asked + list(data):
        expanded = list(SYNTHETIC_BENCHMARKS) if name == SUITE_ALIAS else [name]
        names += [n for n in expanded if n not in names]
    unknown = [n for n in names if n not in data and n not in SYNTHETIC_BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"eval: unknown benchmark(s) {unknown}; synthetic ones are {list(SYNTHETIC_BENCHMARKS)} "
            f"(or '{SUITE_ALIAS}' for all), files are given with --data NAME=FORMAT:PATH"
        )
    return names


def load_benchmarks(names, data, limit, on_error):
    """name -> BenchmarkSet: --data files through their reader, the rest from the suite."""
    from andesvl_jax.eval.readers import READERS, read_benchmark
    from andesvl_jax.eval.suite import synthetic_benchmark

    out = {}
    for name in names:
        if name in data:
            fmt, path = data[name]
            if fmt not in READERS:
                raise SystemExit(f"eval: --data {name}: format {fmt!r} not one of {list(READERS)}")
            try:
                out[name] = read_benchmark(fmt, path, on_error=on_error)
            except (FileNotFoundError, ValueError) as e:  # file-level problems; rows are DataErrors
                raise SystemExit(f"eval: --data {name}: {e}") from None
        else:  # build only what --limit will score
            out[name] = synthetic_benchmark(name, limit)
    return out


def run(args) -> int:
    from andesvl_jax.eval.runner import results_markdown, run_benchmarks
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model

    data = {}
    for name, fmt, path in args.data:
        if name in data:
            raise SystemExit(f"eval: --data names {name!r} twice")
        data[name] = (fmt, path)
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"eval: --limit must be at least 1, got {args.limit}")
    names = benchmark_names(args.benchmarks, data)
    benchmarks = load_benchmarks(names, data, args.limit, args.on_error)
    model, tok = load_model(args.checkpoint)
    engine = Engine(model, tok, image_max_size=args.image_max_size, batch_size=args.batch_size)
    out = args.out or pathlib.Path("runs/eval") / pathlib.Path(args.checkpoint).resolve().name
    summary = run_benchmarks(
        engine,
        benchmarks,
        out,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        thinking=args.thinking,
        progress=not args.no_progress,
    )
    print(results_markdown(summary), end="")
    print(f"[results in {out}]")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score a checkpoint on benchmarks")
    p.add_argument("--checkpoint", required=True, help="training workdir or safetensors directory")
    p.add_argument(
        "--benchmarks",
        help=f"comma-separated suite names, '{SUITE_ALIAS}' for all, or --data names",
    )
    p.add_argument(
        "--data",
        action="append",
        default=[],
        type=parse_data,
        metavar="NAME=FORMAT:PATH",
        help="a benchmark file and its reader format (repeatable)",
    )
    p.add_argument("--limit", type=int, help="score only the first N samples of each benchmark")
    p.add_argument("--out", type=pathlib.Path, help="default: runs/eval/<checkpoint name>")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--thinking", dest="thinking", action="store_true", default=None)
    mode.add_argument("--no-thinking", dest="thinking", action="store_false")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--image-max-size", type=int, default=1792, help="official evaluation: 1792")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--on-error", choices=["skip", "raise"], default="skip", help="bad file rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
