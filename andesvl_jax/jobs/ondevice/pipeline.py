"""Resumable steps: each writes its outputs under ROOT/<step>/ and, last, ROOT/<step>/step.json
(its record). A step whose step.json exists is skipped; a step killed mid-way has no step.json and
is run again (training steps resume from their own checkpoints), so a killed job resumes at the
step that was interrupted without redoing finished ones."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import resource
import time
from collections.abc import Callable

from andesvl_jax.data.atomic_io import atomic_write_text

RECORD = "step.json"


@dataclasses.dataclass(frozen=True)
class Job:
    """What every step sees: the demo workdir, the job's root, and how big to make the work."""

    workdir: pathlib.Path  # the demo's workdir (holds sft/)
    root: pathlib.Path  # workdir/ondevice
    steps_scale: float = 1.0  # training steps x this (tests: tiny)
    samples: int = 200  # held-out questions per measurement
    repeats: int = 3  # timing repeats (interleaved; median and spread reported)
    long_context: pathlib.Path | None = None  # a long-context model for the eviction table

    @property
    def sft(self) -> pathlib.Path:
        return self.workdir / "sft"

    def dir(self, step: str) -> pathlib.Path:
        return self.root / step

    def steps(self, n: int) -> int:
        return max(2, int(round(n * self.steps_scale)))

    def record(self, step: str) -> dict:
        path = self.dir(step) / RECORD
        if not path.is_file():
            raise FileNotFoundError(f"{path}: step {step!r} has not finished; run demo-ondevice")
        return json.loads(path.read_text())


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Job], dict]  # -> the step's record (JSON-able); outputs under job.dir(name)
    help: str


def run_steps(job: Job, steps: list[Step], *, redo: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run each unfinished step in order -> {step: record}; `redo` names steps to run again."""
    records = {}
    for step in steps:
        done = job.dir(step.name) / RECORD
        if done.is_file() and step.name not in redo:
            records[step.name] = json.loads(done.read_text())
            print(f"[{step.name}] done already ({done})", flush=True)
            continue
        job.dir(step.name).mkdir(parents=True, exist_ok=True)
        print(f"[{step.name}] {step.help}", flush=True)
        start = time.perf_counter()
        record = step.run(job)
        record["seconds"] = time.perf_counter() - start
        record["peak_rss_gib"] = peak_rss_gib()
        atomic_write_text(done, json.dumps(record, indent=2, default=str))
        records[step.name] = record
        print(f"[{step.name}] finished in {record['seconds']:.0f} s", flush=True)
    return records


def peak_rss_gib() -> float:
    """Peak resident memory of this process and of its finished children (GiB, Linux KiB units)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 2**20
