"""Will every AndesVL size x stage fit? `compile-check` at full depth for the whole matrix.

    python benchmarks/fit_table.py                          # 4 sizes x 8 stages, 256 devices (2 cores: ~26 min)
    python benchmarks/fit_table.py --sizes 0.6b --stages joint --single-device
    python benchmarks/fit_table.py --sizes 4b --stages multitask --remat full

Each row runs `andesvl-jax compile-check` in its own process on `--devices` virtual CPU devices: the
real train step of `experiments/andesvl.py:size=S,stage=T` at every layer, the real widths, the 151 936
vocabulary and the stage budget's rows and lengths, lowered for abstract inputs and compiled, then
XLA's memory analysis per device. The mesh of a row is `MESHES[stage]` (one packed row per device on
the FSDP axis; tensor parallelism where a stage has fewer rows than devices). Every row is compiled
with each remat policy of `--remat`, in order of preference (least recompute first), and the first
that fits `--hbm-gib` is the row's choice: `dots_no_batch` keeps the weight products' outputs for the
backward (no recompute of the matmuls), `full` keeps only each layer's input (the experiment's
default). `--single-device` runs one device with 8 rows accumulated one per micro-step
(`optim.accum_steps=8`; the per-device memory of any batch accumulated that way, the batch argument
aside): what one 80 GB card needs.

Prints a markdown table (docs/training.md "Will it fit") and writes benchmarks/results/fit_table.json.
The CPU compiler's temporaries are an estimate of an accelerator's (train/compile_check.py).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import time

SIZES = ("0.6b", "1b", "2b", "4b")
STAGES = ("align", "align_hr", "joint", "multitask", "sft", "mpo", "grpo_warmup", "grpo", "qat")
# stage -> mesh on 256 devices: the budgets' rows (experiments/andesvl.py STAGE_BUDGETS) one per
# FSDP shard; multitask's 64 rows of 32 768 tokens add 4-way tensor parallelism.
MESHES = {
    "align": "fsdp=256",
    "align_hr": "fsdp=128,tensor=2",
    "joint": "fsdp=128,tensor=2",
    "multitask": "fsdp=64,tensor=4",
    "sft": "fsdp=128,tensor=2",
    "mpo": "fsdp=128,tensor=2",
    "grpo_warmup": "fsdp=128,tensor=2",
    "grpo": "fsdp=256",
    "qat": "fsdp=128,tensor=2",
}


def run_row(size: str, stage: str, remat: str, args) -> dict:
    """One compile-check; its JSON row, or the reason it could not run."""
    config = f"experiments/andesvl.py:size={size},stage={stage}"
    cmd = [sys.executable, "-m", "andesvl_jax", "compile-check", "--config", config]
    overrides = ["--config.data.path=/data/train.jsonl"]  # REQUIRED; never opened
    if args.single_device:
        cmd += ["--mesh", "fsdp=1", "--devices", "1"]
        if stage == "grpo":  # a round of 1 prompt x 8 samples, one row per micro-step
            overrides += ["--config.grpo.prompts_per_rollout=1", "--config.optim.accum_steps=8"]
        else:
            overrides += ["--config.data.batch_size=8", "--config.optim.accum_steps=8"]
    else:
        cmd += ["--mesh", MESHES[stage], "--devices", str(args.devices)]
    overrides.append(f"--config.model.remat={remat}")
    cmd += ["--hbm-gib", str(args.hbm_gib), *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode in (0, 1) and proc.stdout.strip().startswith("{"):
        row = json.loads(proc.stdout)
        row.update(size=size, stage=stage, wall_s=round(wall, 1), remat=remat)
        if proc.returncode == 1:
            row["shortfall"] = proc.stderr.strip().splitlines()[-1]
        return row
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {
        "size": size,
        "stage": stage,
        "remat": remat,
        "error": " | ".join(tail),
        "wall_s": round(wall, 1),
    }


def choose(tries: list[dict]) -> dict:
    """The first policy (least recompute) that fits, with every policy's peak; else the last."""
    pick = next((t for t in tries if t.get("fits")), tries[-1])
    return pick | {"peaks": {t["remat"]: t.get("peak_gib", t.get("error")) for t in tries}}


def markdown(rows: list[dict]) -> str:
    head = (
        "| size | stage | mesh | rows x tokens / patches | remat | params | optimizer | extra | temp "
        "| peak GiB | fits | other remat: peak GiB | TFLOP/dev/step | compile s |\n|" + "---|" * 14
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['stage']} | – | – | error: {r['error']} |" + " |" * 9)
            continue
        others = ", ".join(f"{k} {v}" for k, v in r["peaks"].items() if k != r["remat"])
        lines.append(
            f"| {r['size']} | {r['stage']} | {r['mesh']} | {r['rows']} x {r['tokens']} / "
            f"{r['patches']} | {r['remat']} | {r['params_gib']} | {r['optimizer_gib']} | "
            f"{r['extra_gib']} | {r['temp_gib']} | **{r['peak_gib']}** | "
            f"{'yes' if r['fits'] else 'NO'} | {others or '–'} | {r['tflops_per_device']} | "
            f"{r['compile_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--devices", type=int, default=256)
    p.add_argument("--single-device", action="store_true", help="1 device, batch accumulated")
    p.add_argument("--remat", default="dots_no_batch,full", help="policies, preferred first")
    p.add_argument("--hbm-gib", type=float, default=80.0)
    p.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/fit_table.json")
    )
    args = p.parse_args()
    rows = []
    for size in args.sizes.split(","):
        for stage in args.stages.split(","):
            tries = [run_row(size, stage, remat, args) for remat in args.remat.split(",")]
            rows.append(choose(tries))
            print(
                f"{size} {stage}: {rows[-1]['remat']}, peaks {rows[-1]['peaks']} GiB, "
                f"{sum(t['wall_s'] for t in tries):.0f} s",
                file=sys.stderr,
                flush=True,
            )
    print(markdown(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {platform.python_version()}"
    args.out.write_text(
        json.dumps(
            {"machine": machine, "args": vars(args) | {"out": str(args.out)}, "rows": rows},
            indent=1,
        )
    )
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
