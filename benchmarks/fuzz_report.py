"""The hostile-input figures of docs/security.md: rerun the fuzz suite, print the table per reader.

    python benchmarks/fuzz_report.py [--scale 1] [--out benchmarks/results/fuzz_report.json]

Runs `pytest tests/security` with ANDESVL_FUZZ_SCALE=--scale (every fuzz test's number of
hypothesis examples times the scale; 1 = the default test run, seeded, so the same cases every
time) and ANDESVL_FUZZ_SUMMARY pointing at a temporary file, then prints per reader: cases,
accepted, accepted with a fix (e.g. CMYK converted, EXIF rotation applied), rejected with a clear
error (a project error naming the file and the field/tensor/line, or a counted, reported skip),
crashes (anything else, a hang or an error that does not say where: the goal is 0), and the wall
time. "rows" lines count the rows of benchmark files read with on_error='skip'.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLUMNS = ("accepted", "accepted_with_fix", "rejected", "crash")


def run(scale: float, pytest_args: list[str]) -> tuple[dict, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        summary = pathlib.Path(tmp) / "summary.json"
        env = {**os.environ, "ANDESVL_FUZZ_SCALE": str(scale), "ANDESVL_FUZZ_SUMMARY": str(summary)}
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:warnings", "tests/security",
             *pytest_args],
            cwd=ROOT, env=env,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        counts = json.loads(summary.read_text()) if summary.is_file() else {}
    return counts, seconds, proc.returncode


def table(counts: dict) -> str:
    head = f"| reader | cases | {' | '.join(c.replace('_', ' ') for c in COLUMNS)} |"
    lines = [head, "|---" * (len(COLUMNS) + 2) + "|"]
    totals = dict.fromkeys(COLUMNS, 0)
    for reader, c in sorted(counts.items()):
        row = [c.get(k, 0) for k in COLUMNS]
        for k, v in zip(COLUMNS, row, strict=True):
            totals[k] += v
        lines.append(f"| {reader} | {sum(row)} | {' | '.join(map(str, row))} |")
    total = [totals[k] for k in COLUMNS]
    lines.append(f"| **all** | **{sum(total)}** | {' | '.join(map(str, total))} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="examples per fuzz test, times this")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz_report.json"))
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (e.g. -k images)")
    args = p.parse_args()
    counts, seconds, rc = run(args.scale, args.pytest_args)
    print(table(counts))
    print(f"\nscale {args.scale:g}: pytest exit status {rc}, {seconds:.1f} s wall")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"scale": args.scale, "seconds": seconds, "pytest_rc": rc, "readers": counts},
                   indent=1) + "\n"
    )  # fmt: skip
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
