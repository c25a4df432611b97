"""Interleaved training-step time of every ablation cell (eval/ablate_timing.py), the cost column
of docs/ablations.md without training anything:

    python benchmarks/ablation_step_time.py [--rounds 5] [--steps 3] [--tasks position]

Each cell's compiled step (experiments/ablations.py, seed 0, its first batch) runs round-robin,
order rotated each round; prints median s/step and the ratio to the baseline cell with
[min-max] over rounds, and writes benchmarks/results/ablation_step_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

from andesvl_jax.eval.ablate_cli import BASELINE, CELLS, EXPERIMENT
from andesvl_jax.eval.ablate_timing import interleaved_step_times
from andesvl_jax.train.launch import load_config

OUT = pathlib.Path(__file__).parent / "results" / "ablation_step_time.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per cell per round")
    p.add_argument("--tasks", default="position", help="experiments/ablations.py task mixture")
    args = p.parse_args()
    configs = {
        name: load_config(
            f"{EXPERIMENT}:{cell.config_arg(0, None, args.tasks)}",
            [*cell.overrides, "--config.data.worker_count=0"],
        )
        for name, cell in CELLS.items()
    }
    start = time.perf_counter()
    timing = interleaved_step_times(
        configs, rounds=args.rounds, steps=args.steps, baseline=BASELINE
    )
    seconds = time.perf_counter() - start
    print(f"{'cell':32s} {'s/step median [min-max]':>26s} {'ratio median [min-max]':>24s}")
    for name, t in timing.items():
        print(f"{name:32s} {t['median_s']:8.3f} [{t['min_s']:.3f}-{t['max_s']:.3f}]"
              f" {t['ratio']:10.2f} [{t['ratio_min']:.2f}-{t['ratio_max']:.2f}]")  # fmt: skip
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "load_average": os.getloadavg()}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"command": f"python benchmarks/ablation_step_time.py --rounds "
                               f"{args.rounds} --steps {args.steps} --tasks {args.tasks}",
                               "seconds": seconds, "machine": machine, "timing": timing},
                              indent=2))  # fmt: skip
    print(f"[{OUT}]")


if __name__ == "__main__":
    main()
