"""report.md (+ report.json) of a demo-ondevice run: one table per measurement step, the float
reference in each, a goal line saying met / NOT met, and the wall time of every step."""

from __future__ import annotations

import json
import os
import pathlib
import platform

from andesvl_jax.data.atomic_io import atomic_write_text


def _pct(x) -> str:
    return f"{x:.1%}"


def _spread(v, fmt="{:.2f}") -> str:
    return f"{fmt.format(v[0])} [{fmt.format(v[1])}–{fmt.format(v[2])}]"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def qat(rec: dict) -> list[str]:
    rows = [
        [r["form"], _pct(r["top1_consistency"]), _pct(r["exact_match"]), f"{r['perplexity']:.3f}",
         f"{r['bpw']:.3f}" if "bpw" in r else "32 (fp32)"]
        for r in rec["rows"]
    ]  # fmt: skip
    head = ["form", "top-1 consistency vs float", "exact match", "perplexity", "LLM-linear BPW"]
    return [f"Held-out questions: {rec['samples']}.", "", *_table(head, rows)]


def speculative(rec: dict) -> list[str]:
    rows = [
        [r["config"], f"{r['tau']:.2f}", r["tokens"], _spread(r["tok_s"], "{:.1f}"),
         _spread(r["speedup"]) + "×"]
        for r in rec["rows"]
    ]  # fmt: skip
    tree = rec["tree"]
    return [
        f"{rec['prompts']} prompts, batch 1, {rec['new_tokens']} new tokens each (no stop tokens), "
        f"draft tree top-k {tree['top_k']} depth {tree['depth']} total {tree['total_tokens']}; "
        f"median [min–max] of {rec['repeats']} interleaved rounds; τ counts the bonus token. "
        f"Speculative output identical to the compressed model's own: {rec['lossless']}.",
        "",
        *_table(["configuration", "τ", "tokens", "tok/s", "speedup vs float"], rows),
    ]


def size(rec: dict) -> list[str]:
    rows = [
        [r["form"], f"{r['llm_linear_bpw']:.3f}", f"{r['bytes'] / 2**20:.2f}",
         _pct(r["sparsity"]) if "sparsity" in r else "-", f"{r['peak_rss_gib']:.2f}"]
        for r in rec["rows"]
    ]  # fmt: skip
    head = [
        "form",
        "LLM-linear BPW (stored)",
        "size MiB",
        "sparsity",
        "peak RSS GiB (load + decode)",
    ]
    return [
        f"{rec['parameters']:,} parameters. Peak memory: a fresh process loading the form and "
        "answering 4 questions (JAX runtime included).",
        "",
        *_table(head, rows),
    ]


def scenarios(rec: dict) -> list[str]:
    rows = [
        [r["scenario"], _pct(r["base_float"]), _pct(r["base_deployed"]), _pct(r["lora_float"]),
         _pct(r["lora_naive"]), _pct(r["qalft"])]
        for r in rec["rows"]
    ]  # fmt: skip
    head = [
        "scenario",
        "base float",
        "base deployed",
        "LoRA on float",
        "same LoRA on deployed (naive)",
        "QALFT on deployed",
    ]
    return [
        f"Held-out exact match, {rec['samples']} questions per scenario.",
        "",
        *_table(head, rows),
    ]


def runtimes(rec: dict) -> list[str]:
    rows = [
        [r["runtime"], r["name"], r["prompts"], f"{r['top1_agreement']:.2%}", f"{r['greedy_identical']:.0%}",
         f"{r['max_rel_logit_error']:.1e}", f"{r['runtime_tok_s']:.1f}", f"{r['ours_tok_s']:.1f}"]
        for r in rec["rows"]
    ]  # fmt: skip
    head = ["runtime [tolerance]", "prompt set", "prompts", "top-1 agreement", "greedy identical",
            "max rel. logit error", "runtime tok/s", "our engine tok/s"]  # fmt: skip
    return [
        "`andesvl-jax export verify` on each export, against the model it was exported from "
        "(GGUF: the deployed QAT model; LiteRT-LM: the float SFT model, weights int8 in the runtime). "
        "Top-1 agreement is teacher-forced over each prompt and our 16-token greedy continuation "
        "(which runs past the answer's stop token); tok/s includes each runtime's per-call set-up. "
        f"`export verify`'s own bar (≥ 99 % top-1, the runner's logit tolerance): "
        f"{'passed' if rec.get('verify_passed') else 'not passed'}.",
        "",
        *_table(head, rows),
    ]


def eviction(rec: dict) -> list[str]:
    rows = [
        [r["condition"], f"{r['mean']:.3f}", f"{r['relative']:.1%}" if r["relative"] else "-",
         *(f"{v:.3f}" for v in r["by_task"].values()), r["n"]]
        for r in rec["rows"]
    ]  # fmt: skip
    tasks = list(rec["rows"][0]["by_task"])
    return [
        f"Long-context model `{rec['checkpoint']}` ({rec['model']}); budgets are the fraction "
        "kept (kvpress's compression ratio = 1 − budget).",
        "",
        *_table(["condition", "mean", "vs full", *tasks, "samples"], rows),
    ]


SECTIONS = {  # table step -> (title, renderer)
    "table_qat": ("QAT (W4A16): PTQ vs QAT", qat),
    "table_speculative": ("Speculative decoding", speculative),
    "table_size": ("Size", size),
    "table_scenarios": ("Scenarios: 1+N LoRA by QALFT", scenarios),
    "table_runtimes": ("Runtimes: llama.cpp and LiteRT-LM", runtimes),
    "table_eviction": ("Cache eviction", eviction),
}


def write_report(root: pathlib.Path, records: dict[str, dict], command: str) -> pathlib.Path:
    lines = [
        "# On-device report (`andesvl-jax demo-ondevice`)",
        "",
        f"Command: `{command}`. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
    ]
    for name, (title, render) in SECTIONS.items():
        if name not in records:
            continue
        rec = records[name]
        lines += [f"## {title}", "", *render(rec), "",
                  f"Goal: {rec['goal']} — **{'met' if rec['met'] else 'NOT met'}**.", ""]  # fmt: skip
    total = sum(r["seconds"] for r in records.values())
    steps = [[n, f"{r['seconds']:.0f}", f"{r['peak_rss_gib']:.2f}"] for n, r in records.items()]
    lines += [
        "## Wall time",
        "",
        *_table(["step", "seconds", "peak RSS GiB so far"], steps),
        "",
        f"Total {total / 60:.1f} min over the steps run (steps done by an earlier invocation keep "
        "their own times).",
        "",
    ]
    atomic_write_text(root / "report.json", json.dumps(records, indent=2, default=str))
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
