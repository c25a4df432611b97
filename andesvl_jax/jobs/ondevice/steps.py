"""The steps that make the on-device forms of the demo's SFT model (each resumable, pipeline.py).

Sizes: the tiny experiment's recipes (experiments/tiny.py), training steps x `Job.steps_scale`.
"""

from __future__ import annotations

import pathlib

from andesvl_jax.jobs.demo import EXPERIMENT
from andesvl_jax.jobs.ondevice.pipeline import Job, Step

RULES = "w4a16_g32"  # the deployed precision of the job (AndesVL's W4A16 QAT table)
SPARSE = {"rules": "1:4", "method": "sparsegpt", "bits": 4}  # 75 % sparse, 4-bit kept values
SCENARIOS = ("count", "numbers")  # experiments/tiny.py SCENARIOS: two scenario LoRAs
TRAIN_STEPS = {"qat": 200, "sparse": 200, "lora": 120, "draft": 300, "longctx": 300}  # x scale
LONG_CONTEXT = pathlib.Path(EXPERIMENT).parent / "long_context.py"  # the eviction table's model
# the short-prompt recipe that learnt most on 2 cores (docs/kv_eviction.md, "lcC"): the summary
# partly solved at 64-160 characters; nothing trained here retrieves needles (said in the report)
LONG_CONTEXT_ARGS = "lengths=64-160,row=320,batch=16,lr=3e-3,mix=retrieval"


def stage_config(stage: str, steps: int, scenario: str = "none", **overrides):
    """experiments/tiny.py:stage=..,scenario=..,steps=.. with `key.path=value` overrides."""
    from andesvl_jax.train.launch import load_config

    flags = [f"--config.{k}={v}" for k, v in {"progress": False, **overrides}.items()]
    return load_config(f"{EXPERIMENT}:stage={stage},scenario={scenario},steps={steps}", flags)


def deployed_qat(job: Job) -> pathlib.Path:
    from andesvl_jax.infer.load import DEPLOYED_FILE

    return job.dir("qat") / DEPLOYED_FILE


def _quantize(job: Job, step: str, method: str) -> dict:
    from andesvl_jax.jobs.quantize import quantize

    out = job.dir(step)
    steps = job.steps(TRAIN_STEPS["qat"]) if method == "qat" else None
    report = quantize(job.sft, RULES, method, out, steps=steps, overwrite=True)
    return {"dir": str(out), **report}


def ptq(job: Job) -> dict:
    return _quantize(job, "ptq", "rtn")


def qat(job: Job) -> dict:
    return _quantize(job, "qat", "qat")


def sparse(job: Job) -> dict:
    from andesvl_jax.compress.sparse_bpw import bpw_report
    from andesvl_jax.compress.sparse_export import sparse_trained_model
    from andesvl_jax.compress.sparse_io import save_sparse
    from andesvl_jax.train.loop import train

    steps = job.steps(TRAIN_STEPS["sparse"])
    overrides = {f"sparse.{k}": v for k, v in SPARSE.items()}
    config = stage_config(
        "sparse", steps, **overrides, **{"init.from_stage_workdir": job.sft, "save_every": steps}
    )
    run = job.dir("sparse") / "run"
    train(config, run)
    path = save_sparse(sparse_trained_model(run), job.dir("sparse") / "sparse.safetensors")
    rep = bpw_report(path)
    return {
        "file": str(path),
        "run": str(run),
        **SPARSE,
        "linears": rep["linears"],
        "size": rep["file"],
    }


def lora(job: Job) -> dict:
    """Per scenario, a LoRA on the float base (`lora`) and one by QALFT on the deployed QAT base."""
    from andesvl_jax.train.adapter_stage import ADAPTER_DIR
    from andesvl_jax.train.loop import train

    steps = job.steps(TRAIN_STEPS["lora"])
    adapters = {}
    for scenario in SCENARIOS:
        for stage, where in (
            ("lora", {"init.from_stage_workdir": job.sft}),
            ("qalft", {"lora.deployed": deployed_qat(job)}),
        ):
            run = job.dir("lora") / f"{stage}_{scenario}"
            config = stage_config(stage, steps, scenario, **where, save_every=steps)
            train(config, run)
            adapters[f"{stage}_{scenario}"] = str(run / ADAPTER_DIR)
    return {"scenarios": list(SCENARIOS), "adapters": adapters, "steps": steps}


def draft(job: Job) -> dict:
    """A HASS draft head trained against the deployed QAT model (draft.deployed)."""
    from andesvl_jax.train.loop import train

    steps = job.steps(TRAIN_STEPS["draft"])
    config = stage_config(
        "hass", steps, **{"draft.deployed": deployed_qat(job), "save_every": steps}
    )
    summary = train(config, job.dir("draft") / "run")
    return {"draft": str(summary["draft"]), "steps": steps, "target": str(deployed_qat(job))}


def export(job: Job) -> dict:
    """The deployed QAT model (its W4 g32 codes become Q4_0 blocks unchanged) and the QALFT
    adapters as GGUF for llama.cpp; the float SFT model as a LiteRT-LM bundle with int8 weights
    (LiteRT's dynamic-range quantizer: our deployed W4 has no LiteRT form)."""
    from andesvl_jax.export.gguf import export_gguf
    from andesvl_jax.export.litert_export import export_litertlm

    adapters = job.record("lora")["adapters"]
    loras = {s: adapters[f"qalft_{s}"] for s in SCENARIOS}
    gguf = export_gguf(
        deployed_qat(job).parent, job.dir("export") / "gguf", overwrite=True, loras=loras
    )
    litert = export_litertlm(
        job.sft, job.dir("export") / "litert" / "model.litertlm", quant="int8", overwrite=True
    )
    files = [*sorted(gguf.rglob("*.gguf")), litert]
    return {
        "gguf": str(gguf),
        "litertlm": str(litert),
        "files": {str(f): f.stat().st_size for f in files},
    }


def longctx(job: Job) -> dict:
    """The long-context model the eviction table scores (the demo model never saw long prompts):
    `--long-context DIR` when given, else experiments/long_context.py trained here (resumable)."""
    if job.long_context:
        return {"checkpoint": str(job.long_context), "trained_here": False}
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train

    steps = job.steps(TRAIN_STEPS["longctx"])
    config = load_config(
        f"{LONG_CONTEXT}:steps={steps},{LONG_CONTEXT_ARGS}",
        ["--config.progress=False", f"--config.save_every={steps}"],
    )
    run = job.dir("longctx") / "run"
    summary = train(config, run)
    return {"checkpoint": str(run), "trained_here": True, "steps": steps,
            "final_loss": summary.get("final_loss")}  # fmt: skip


BUILD_STEPS = [
    Step("ptq", ptq, f"post-training quantization (RTN {RULES}): the baseline"),
    Step("qat", qat, f"quantization-aware training {RULES} -> the deployed integer model"),
    Step("sparse", sparse, "75 % sparse (SparseGPT 1:4) + 4-bit fine-tune -> packed model"),
    Step("lora", lora, "scenario LoRAs: on the float base, and by QALFT on the deployed base"),
    Step("draft", draft, "HASS draft head for the deployed model"),
    Step("export", export, "export: GGUF (Q4_0 from QAT + QALFT adapters) and LiteRT-LM (int8)"),
    Step("longctx", longctx, "the long-context model for the eviction table"),
]
