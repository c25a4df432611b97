"""`andesvl-jax demo-ondevice`: the on-device main job (docs/ondevice.md).

    andesvl-jax demo-ondevice --workdir runs/demo      # after `andesvl-jax demo` (run first if missing)

From the demo's SFT checkpoint, each step resumable and skipped when its output exists
(jobs/ondevice/pipeline.py): PTQ and QAT at W4A16 -> deployed integer models; 75 % sparse + 4-bit
fine-tune -> packed model; two scenario LoRAs (float base, and QALFT on the deployed base); a HASS
draft head for the deployed model; exports to GGUF and LiteRT-LM; a long-context model for the
KV-eviction table (experiments/long_context.py, or --long-context DIR); then the measurements
(jobs/ondevice/tables.py), each export run in its runtime. Writes
WORKDIR/ondevice/report.md and report.json.
"""

from __future__ import annotations

import pathlib
import sys

from andesvl_jax.jobs.ondevice.pipeline import Job, run_steps
from andesvl_jax.jobs.ondevice.report import write_report
from andesvl_jax.jobs.ondevice.steps import BUILD_STEPS
from andesvl_jax.jobs.ondevice.tables import TABLE_STEPS

STEPS = [*BUILD_STEPS, *TABLE_STEPS]


def ensure_sft(workdir: pathlib.Path, steps_scale: float) -> None:
    """The demo's SFT checkpoint, trained by the main demo job when it is missing."""
    if (workdir / "sft" / "checkpoints").is_dir():
        return
    print(f"{workdir / 'sft'}: no SFT checkpoint yet; running the demo's stages first", flush=True)
    from andesvl_jax.jobs.demo import run_stages

    run_stages(workdir, steps_scale)


def run(args) -> int:
    workdir = pathlib.Path(args.workdir)
    names = [s.name for s in STEPS]
    redo = tuple(x for x in args.redo.split(",") if x)
    if unknown := sorted(set(redo) - set(names)):
        raise SystemExit(f"--redo: unknown steps {unknown}; the steps are {names}")
    long_context = pathlib.Path(args.long_context) if args.long_context else None
    job = Job(
        workdir, workdir / "ondevice", args.steps_scale, args.samples, args.repeats, long_context
    )
    ensure_sft(workdir, args.demo_steps_scale)
    records = run_steps(job, STEPS, redo=redo)
    path = write_report(job.root, records, "andesvl-jax " + " ".join(sys.argv[1:]))
    print(path.read_text())
    print(f"report: {path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo-ondevice",
        help="compress, adapt, accelerate and measure the demo model (on-device job)",
    )
    p.add_argument("--workdir", default="runs/demo", help="the demo's workdir (holds sft/)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="training steps x this")
    p.add_argument("--demo-steps-scale", type=float, default=1.0, help="if the demo must run first")
    p.add_argument("--samples", type=int, default=200, help="held-out questions per measurement")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (median and spread)")
    p.add_argument("--redo", default="", help="comma-separated steps to run again")
    p.add_argument(
        "--long-context",
        default="",
        help="a trained long-context model (experiments/long_context.py) for the eviction table; "
        "default: the longctx step trains one",
    )
    p.set_defaults(func=run)
