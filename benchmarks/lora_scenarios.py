"""Scenario study of QALFT (docs/lora.md): per scenario, held-out exact match of
  * float:  a LoRA trained on the float base, run on the float base (the upper bound);
  * naive:  that same LoRA run on the W4A8 deployed base (train float, deploy quantized);
  * qalft:  a LoRA trained against the W4A8 deployed base, run on it;
and the base alone on both, plus each adapter's bytes.

    python benchmarks/lora_scenarios.py --base runs/demo/sft --scenarios count --steps 150

The deployed base is PTQ of the float base (w4a8_g32: 4-bit weights in groups of 32, static int8
activations calibrated on `--calib-batches` training batches of the base's run), written once to
`--workdir/w4a8/deployed.safetensors` and never rewritten (its SHA-256 is recorded before and after). Each
LoRA is an `andesvl-jax train` run of experiments/tiny.py:stage=lora|qalft,scenario=S (rank 8,
alpha 16, all LLM linears; QALFT branch float16). Held-out questions: the scenario's task, eval
split, seed 1234 (as the demo's evaluation). Writes benchmarks/results/lora_scenarios.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import time

RESULTS = pathlib.Path(__file__).parent / "results" / "lora_scenarios.json"


def sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


TINY = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "tiny.py"


def tiny_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("experiments_tiny", TINY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deployed_base(base_dir: pathlib.Path, out: pathlib.Path, calib_batches: int) -> pathlib.Path:
    """PTQ w4a8_g32 of the float base (`andesvl-jax quantize --method rtn`), written once."""
    from andesvl_jax.infer.load import DEPLOYED_FILE
    from andesvl_jax.jobs.quantize import quantize

    if not (out / DEPLOYED_FILE).is_file():
        quantize(base_dir, "w4a8_g32", "rtn", out, calib_batches=calib_batches)
    return out / DEPLOYED_FILE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="runs/demo/sft")
    p.add_argument("--workdir", default="runs/lora_study")
    p.add_argument("--scenarios", default="count,numbers")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval", type=int, default=100, help="held-out questions per scenario")
    p.add_argument("--calib-batches", type=int, default=2)
    args = p.parse_args()

    from andesvl_jax.compress.deployed_io import load_deployed
    from andesvl_jax.compress.lora_files import load_adapter
    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
    from andesvl_jax.eval.metrics import evaluate_exact_match
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.jobs.ondevice.steps import stage_config
    from andesvl_jax.train.loop import train

    SCENARIOS = tiny_module().SCENARIOS

    work = pathlib.Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    deployed = deployed_base(pathlib.Path(args.base), work / "w4a8", args.calib_batches)
    digest = sha(deployed)
    float_model, tok = load_model(args.base)
    quant_model = load_deployed(deployed)
    d = stage_config("sft", 1).data
    kw = dict(
        image_max_size=d.image_max_size,
        max_prompt_tokens=d.max_tokens,
        max_patches=d.max_patches,
        batch_size=50,
        adapter_slots=2,
        adapter_max_rank=8,
    )
    engines = {"float": Engine(float_model, tok, **kw), "w4a8": Engine(quant_model, tok, **kw)}
    rows = {}
    for scenario in args.scenarios.split(","):
        ctx = TaskContext(d.min_side, d.max_side)
        src = SyntheticSource(SCENARIOS[scenario], size=args.eval, seed=1234, split="eval", ctx=ctx)
        held = [src[i] for i in range(args.eval)]
        adapters = {}
        for stage, extra in (
            ("lora", {"init.from_stage_workdir": str(pathlib.Path(args.base).resolve())}),
            ("qalft", {"lora.deployed": str(deployed.resolve())}),
        ):
            run_dir = work / f"{stage}_{scenario}"
            if not (run_dir / "adapter").is_dir():
                config = stage_config(stage, args.steps, scenario, **extra)
                train(config, run_dir)
            adapters[stage] = load_adapter(run_dir / "adapter")

        def score(engine_name, adapter=None, held=held, adapters=adapters):
            eng = engines[engine_name]
            if adapter is None:
                return evaluate_exact_match(eng, held)["accuracy"]
            eng.load_adapter("x", adapters[adapter])
            return evaluate_exact_match(eng, held, adapter="x")["accuracy"]

        r = {
            "base_float": score("float"),
            "base_w4a8": score("w4a8"),
            "float": score("float", "lora"),
            "naive": score("w4a8", "lora"),
            "qalft": score("w4a8", "qalft"),
            "adapter_bytes_fp16": adapters["lora"].nbytes(),
        }
        gap = r["float"] - r["naive"]
        r["gap_recovered"] = (r["qalft"] - r["naive"]) / gap if gap > 0 else float("nan")
        r["rel_to_float"] = r["qalft"] / r["float"] - 1 if r["float"] else float("nan")
        rows[scenario] = r
        print(scenario, json.dumps(r), flush=True)
    result = {
        "command": "python benchmarks/lora_scenarios.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "deployed_sha256_before": digest,
        "deployed_sha256_after": sha(deployed),
        "minutes": (time.time() - t0) / 60,
        "scenarios": rows,
    }
    print(
        f"\n{'scenario':<9} {'base':>6} {'base q':>6} {'float':>6} {'naive':>6} {'qalft':>6} {'recov':>6}"
    )
    for s, r in rows.items():
        print(
            f"{s:<9} {r['base_float']:6.1%} {r['base_w4a8']:6.1%} {r['float']:6.1%} "
            f"{r['naive']:6.1%} {r['qalft']:6.1%} {r['gap_recovered']:6.2f}"
        )
    print(f"deployed base unchanged: {digest == sha(deployed)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
