"""Sparsity on the demo model: {magnitude, Wanda, SparseGPT} x {50 %, 75 %} x {one-shot, fine-tuned}.

    python benchmarks/sparsity.py --checkpoint runs/demo/sft --out runs/demo/sparse

Every point is a packed file (compress/sparse_io.py) loaded back — 1:4 linears on the sparse kernel
dispatch, the rest decoded — and scored against the float model like `eval-quant`
(jobs/eval_quant.scorer): exact match of its own greedy answers on the demo's held-out questions,
top-1 consistency teacher-forced on the float model's answers, perplexity of the reference answers.
BPW and file size are counted from the stored bytes (compress/sparse_bpw.py). The kept values are
LSQ W4 (group 64: the tiny model's K is 64 or 128). One-shot: pruned from the float model (Wanda
and SparseGPT calibrated on training batches), steps from the pruned weights. Fine-tuned: the
`sparse` stage (experiments/tiny.py) from the same float checkpoint, `--steps` steps, distilled.

Writes OUT/sparsity.json, benchmarks/results/sparsity.json, the table (stdout) and
docs/sparsity.png (quality vs BPW, with the dense QAT points of an `eval-quant` run if given).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = {"50%": "2:4", "75%": "1:4"}  # the N:M patterns the format stores (2:4, 1:4)
# unstructured one-shot points (same methods); attn50_mlp875: 75 % placed per layer type
EXTRA_ONESHOT = ("u50", "u75", "attn50_mlp875")
# 75 % at <= 1.8 BPW with a finer pattern: 2:8 (5-bit index per 8) with W3 kept values = 1.625
BEST = [("sparsegpt", "75%", "2:8", "one-shot", 3), ("sparsegpt", "75%", "2:8", "fine-tuned", 3)]


def oneshot(float_dir, rules, method, path, calib_batches, bits=4):
    from andesvl_jax.compress.prune import prune_model, sparse_structure
    from andesvl_jax.compress.sparse_io import save_sparse
    from andesvl_jax.configs import model_config
    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.train.loop import calibration_batches, calibration_run

    config = load_run_config(float_dir)
    model, _ = load_model(float_dir)
    model = sparse_structure(bits, 64)(model)
    run = None
    if method != "magnitude":
        run = calibration_run(calibration_batches(config, model_config(config), calib_batches))
    prune_model(model, rules, method, run)
    return save_sparse(model, path)


def finetune(float_dir, rules, method, workdir, path, steps, bits=4):
    from andesvl_jax.compress.sparse_export import sparse_trained_model
    from andesvl_jax.compress.sparse_io import save_sparse
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train

    overrides = [
        f"--config.sparse.rules={rules}",
        f"--config.sparse.method={method}",
        f"--config.sparse.bits={bits}",
        f"--config.steps={steps}",
        f"--config.init.from_stage_workdir={float_dir}",
        "--config.tensorboard=False",
        "--config.progress=False",
        f"--config.save_every={steps}",
    ]
    config = load_config(f"{REPO}/experiments/tiny.py:stage=sparse", overrides)
    train(config, workdir)
    return save_sparse(sparse_trained_model(workdir), path)


def table(rows) -> str:
    lines = [
        "| method | sparsity | pattern | values | mode | exact match | top-1 consistency | "
        "perplexity | BPW (LLM linears) | file bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bpw = "float" if r["bpw"] is None else f"{r['bpw']:.3f}"
        lines.append(
            f"| {r['method']} | {r['sparsity']} | {r['pattern']} | "
            f"{'float' if r['bits'] is None else 'W' + str(r['bits'])} | {r['mode']} | "
            f"{r['exact_match']:.1%} | {r['top1_consistency']:.2%} | {r['perplexity']:.3f} | "
            f"{bpw} | {r['file_bytes']:,} |"
        )
    return "\n".join(lines)


def plot(rows, qat_rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ref = next(r for r in rows if r["method"] == "float")
    for metric, ax in zip(("exact_match", "top1_consistency"), axes, strict=True):
        for mode, marker in (("one-shot", "o"), ("fine-tuned", "s"), ("fine-tuned long", "*")):
            for method in METHODS:
                pts = sorted(
                    (r["bpw"], r[metric])
                    for r in rows
                    if r["method"] == method and r["mode"] == mode and r["bpw"] is not None
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker, label=f"{method} {mode}")
        qat = sorted((r["bpw"], r[metric]) for r in qat_rows if r.get("method") == "qat")
        if qat:
            ax.plot(*zip(*qat, strict=True), "k^--", label="dense QAT (eval-quant)")
        ax.axhline(ref[metric], color="grey", ls=":", label="float")
        ax.axvline(1.8, color="red", lw=0.8, ls="--")
        ax.set_xlabel("bits per weight (LLM linears, stored bytes)")
        ax.set_title(metric.replace("_", " "))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    from andesvl_jax.compress.sparse_bpw import bpw_report
    from andesvl_jax.compress.sparse_io import load_sparse
    from andesvl_jax.jobs.eval_quant import scorer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/demo/sft")
    p.add_argument("--out", default="runs/demo/sparse")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--steps", type=int, default=100, help="fine-tune steps per point")
    p.add_argument("--calib-batches", type=int, default=4)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--modes", default="one-shot,fine-tuned")
    p.add_argument("--patterns", help="only these rules (e.g. 1:4,2:8); default: all")
    p.add_argument(
        "--also",
        action="append",
        default=[],
        help="another run's OUT/sparsity.json (e.g. longer fine-tunes): its rows join the table "
        "and plot as mode 'fine-tuned long'",
    )
    p.add_argument("--qat-json", help="an eval-quant eval_quant.json for the dense QAT points")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    float_dir = pathlib.Path(args.checkpoint)
    score, (float_model, tok) = scorer(float_dir, args.samples)
    results = out / "sparsity.json"
    rows = json.loads(results.read_text()) if results.is_file() else []
    done = {(r["method"], r["pattern"], r["mode"], r["bits"]) for r in rows}
    if ("float", "-", "-", None) not in done:
        rows.append(
            {"method": "float", "sparsity": "0%", "pattern": "-", "mode": "-", "bits": None, "bpw": None,
             "file_bytes": 0, **score(float_model, tok)}
        )  # fmt: skip
    methods, modes = args.methods.split(","), args.modes.split(",")
    jobs = [
        (method, sparsity, rules, mode, 4)
        for mode in modes
        for sparsity, rules in PATTERNS.items()
        for method in methods
    ]
    jobs += [
        (method, "75%" if rules == "attn50_mlp875" else f"{rules[1:]}%", rules, "one-shot", 4)
        for rules in EXTRA_ONESHOT
        for method in methods
        if "one-shot" in modes
    ]
    jobs += [j for j in BEST if j[0] in methods and j[3] in modes]
    if args.patterns:
        jobs = [j for j in jobs if j[2] in args.patterns.split(",")]
    for method, sparsity, rules, mode, bits in jobs:
        if (method, rules, mode, bits) in done:
            continue
        start = time.perf_counter()
        tag = f"{method}-{rules.replace(':', 'of')}-w{bits}-{mode}"
        path = out / f"{tag}.safetensors"
        if mode == "one-shot":
            oneshot(float_dir, rules, method, path, args.calib_batches, bits)
        else:
            finetune(float_dir, rules, method, out / tag, path, args.steps, bits)
        rep = bpw_report(path)
        row = {
            "method": method,
            "sparsity": sparsity,
            "pattern": rules,
            "mode": mode,
            "bits": bits,
            **score(load_sparse(path), tok),
            "bpw": rep["linears"]["bpw"],
            "measured_sparsity": rep["linears"]["sparsity"],
            "file_bytes": rep["file"]["bytes"],
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(
            f"{tag:32s} EM {row['exact_match']:.1%} top-1 {row['top1_consistency']:.2%} "
            f"ppl {row['perplexity']:.3f} bpw {row['bpw']:.3f} ({row['seconds']:.0f} s)",
            flush=True,
        )
        results.write_text(json.dumps(rows, indent=1))
    for other in args.also:
        extra = [r for r in json.loads(pathlib.Path(other).read_text()) if r["method"] != "float"]
        rows = [r for r in rows if r["mode"] != "fine-tuned long"]
        rows += [{**r, "mode": "fine-tuned long", "source": other} for r in extra]
    text = table(rows)
    print(text)
    meta = {
        "command": "python benchmarks/sparsity.py "
        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if v is not None),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "samples": args.samples,
        "finetune_steps": args.steps,
    }
    (REPO / "benchmarks/results/sparsity.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=1)
    )
    qat_rows = json.loads(pathlib.Path(args.qat_json).read_text()) if args.qat_json else []
    plot(rows, qat_rows, REPO / "docs/sparsity.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
