"""Peak memory of one model form in our engine: `python -m andesvl_jax.jobs.ondevice.peak PATH FLOAT_RUN`
loads the model (anything `load_model` opens) in a fresh process, answers a few held-out questions and
prints {"peak_rss_gib": ...} — the resident peak (VmHWM) of load + decode, JAX runtime included."""

from __future__ import annotations

import json
import pathlib
import resource
import sys


def main(path: str, float_run: str) -> None:
    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.jobs.demo import held_out

    d = load_run_config(pathlib.Path(float_run)).data
    model, tokenizer = load_model(path)  # a workdir, a deployed or a packed sparse file
    engine = Engine(
        model, tokenizer, image_max_size=d.image_max_size, max_prompt_tokens=d.max_tokens,
        max_patches=d.max_patches, batch_size=4,
    )  # fmt: skip
    engine.generate(held_out(d, 4), max_new_tokens=8)
    print(json.dumps({"peak_rss_gib": high_water_gib()}))


def high_water_gib() -> float:
    """This process's resident high-water mark (VmHWM). Not getrusage's ru_maxrss: Linux carries
    that over exec from the parent, so a child started by a bigger job would report its parent's
    peak."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # no /proc: best effort


if __name__ == "__main__":
    main(*sys.argv[1:3])
