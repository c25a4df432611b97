"""A writer in a subprocess, for test_writers_atomic.py: writes generation 0 of a file completely,
prints 'ready', then rewrites it forever (generation 1, 2, ...) until SIGKILLed; or, with
`diskfull`, writes generation 0, then under RLIMIT_FSIZE (a full disk) tries a bigger one and
prints the error it got as JSON.

usage: python writer_worker.py WRITER PATH [diskfull]
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import signal
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402


def safetensors_writer(path: pathlib.Path):
    from andesvl_jax.convert.safetensors_io import write_safetensors

    def write(gen: int, mb: int = 24):
        write_safetensors(path, {"w": np.full(mb * 2**18, gen, np.float32)})

    return write


def report_writer(path: pathlib.Path):
    from andesvl_jax.eval.runner import write_reports

    def write(gen: int, mb: int = 4):
        # results.json carries the generation and ~mb MiB of padding, so a write takes a while.
        summary = {"gen": gen, "pad": "x" * (mb * 2**20), "benchmarks": {}}
        write_reports(summary, path)

    return write


def orbax_payload(gen: int, mb: int) -> np.ndarray:
    return np.random.default_rng(gen).random(mb * 2**18, dtype=np.float32)


def orbax_writer(path: pathlib.Path):
    from andesvl_jax.train.checkpoint import Checkpointer

    ckpt = Checkpointer(path, keep=2, async_save=True)

    def write(gen: int, mb: int = 64):
        state = {"w": orbax_payload(gen, mb)}  # random: orbax compresses constant arrays away
        ckpt.save(gen, state, {"gen": gen}, force=True)
        ckpt.wait()

    return write


class EchoEngine:
    """Answers 'yes' to everything (the runner only needs .generate and .batch_size)."""

    batch_size = 4

    def generate(self, samples, **kw):
        from types import SimpleNamespace

        return [SimpleNamespace(text="yes", answer="yes", finish_reason="stop") for _ in samples]


def prediction_samples(n: int):
    from andesvl_jax.data.sample import Message, Sample

    return [
        Sample(
            [Message("user", f"question {i}?"), Message("assistant", "yes")],
            [],
            meta={"metric": "yes_no", "answer": "yes", "index": i},
            origin=f"bench:{i}",
        )
        for i in range(n)
    ]


def predictions(path: pathlib.Path, n: int):
    from andesvl_jax.eval.runner import generate_predictions

    return generate_predictions(
        EchoEngine(), "bench", prediction_samples(n), path,
        max_new_tokens=4, thinking=None, sampling=None, progress=False,
    )  # fmt: skip


WRITERS = {"safetensors": safetensors_writer, "reports": report_writer, "orbax": orbax_writer}


def main() -> None:
    kind, path = sys.argv[1], pathlib.Path(sys.argv[2])
    if kind == "predictions":  # append-only JSONL: one fsynced batch after another
        print("ready", flush=True)
        predictions(path, 10**6)
        return
    if kind == "reports":
        path.mkdir(parents=True, exist_ok=True)
    write = WRITERS[kind](path)
    write(0, 1)
    if sys.argv[3:] == ["diskfull"]:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**17, 2**17))
        try:
            write(1, 8)
            print(json.dumps({"error": None}), flush=True)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            print(json.dumps({"error": type(e).__name__, "message": str(e)}), flush=True)
        return
    print("ready", flush=True)
    gen = 1
    while True:
        write(gen)
        gen += 1


if __name__ == "__main__":
    main()
