"""Run benchmarks through a generation engine: resumable JSONL predictions, then scored reports.

For each benchmark, the prompts not yet answered are generated in batches of `engine.batch_size`;
after every batch one JSON line per sample is appended to `out_dir/predictions/<benchmark>.jsonl`
and flushed, so an interrupted run loses at most one batch. A rerun resumes: indices already in the
file are skipped; unreadable lines (the half-written last line of a crash) are dropped, counted and
regenerated. Scores are then recomputed from the file (so a resumed run reports exactly what an
uninterrupted one would) and written to `results.json`, `results.md` (grouped by AndesVL domain)
and `results.png`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

from andesvl_jax.data.atomic_io import atomic_write_text, atomic_write_with
from andesvl_jax.data.sample import Sample
from andesvl_jax.eval.metrics import evaluate_predictions, get_metric
from andesvl_jax.eval.readers.base import BenchmarkSet
from andesvl_jax.eval.suite import DOMAINS, domain_of

PREDICTIONS_DIR = "predictions"
_NAME = re.compile(r"[\w.+-]+")  # a benchmark name is also its predictions file name


def prompt_text(sample: Sample) -> str:
    """The prompt as one string ('role: content' per message), as stored in the predictions."""
    return "\n".join(f"{m.role}: {m.content}" for m in sample.prompt)


def read_predictions(path: pathlib.Path) -> tuple[dict[int, dict[str, Any]], int]:
    """Records by sample index, and how many lines were dropped (unreadable or repeated).

    If any line was dropped, or the last one lacks its newline (a write cut just before it), the
    file is rewritten with the good records, so appends start on a clean line.
    """
    if not path.is_file():
        return {}, 0
    records: dict[int, dict[str, Any]] = {}
    dropped = 0
    line = b"\n"
    with open(path, "rb") as f:
        for line in f:
            try:  # not UTF-8, not JSON, too deeply nested, no integer index: dropped, counted
                record = json.loads(line.decode("utf-8"))
                index = int(record["index"])
            except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
                dropped += 1
                continue
            if index in records:
                dropped += 1
                continue
            records[index] = record
    if dropped or not line.endswith(b"\n"):
        atomic_write_text(
            path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values())
        )
    return records, dropped


def _check_resumable(path: pathlib.Path, records: Mapping[int, dict], samples: Sequence[Sample]):
    for index, record in records.items():
        if index < len(samples):
            sample = samples[index]
            if (record.get("prompt"), record.get("reference")) != (
                prompt_text(sample),
                sample.answer,
            ):
                raise ValueError(
                    f"{path}: the stored prediction for index {index} was made for a different "
                    f"prompt or reference ({record.get('origin')!r}, now {sample.origin!r}); "
                    "write to a fresh output directory or delete the file"
                )


def _benchmark_metric(name: str, samples: Sequence[Sample]) -> str:
    metrics = {s.meta.get("metric") for s in samples}
    if len(metrics) != 1 or None in metrics:
        raise ValueError(
            f"benchmark {name!r}: every sample's meta must name the same metric, found {metrics}"
        )
    return metrics.pop()


def _record(index: int, sample: Sample, completion, metric, seconds: float) -> dict[str, Any]:
    return {
        "index": index,
        "id": sample.meta.get("index"),
        "origin": sample.origin,
        "prompt": prompt_text(sample),
        "prediction": completion.text,
        "answer": completion.answer,
        "reference": sample.answer,
        "finish_reason": completion.finish_reason,
        "seconds": seconds,
        "score": metric(completion.text, sample.meta),
    }


def generate_predictions(
    engine,
    name: str,
    samples: Sequence[Sample],
    path: pathlib.Path,
    *,
    max_new_tokens: int,
    thinking: bool | None,
    sampling,
    progress: bool,
) -> dict[str, Any]:
    """Answer every sample not yet in `path`, appending a line per sample after each batch."""
    metric = get_metric(_benchmark_metric(name, samples))
    records, dropped = read_predictions(path)
    _check_resumable(path, records, samples)
    pending = [i for i in range(len(samples)) if i not in records]
    batch = max(1, int(getattr(engine, "batch_size", 8)))
    bar = tqdm(
        total=len(samples), initial=len(samples) - len(pending), desc=name, unit="sample",
        disable=not progress,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with bar, open(path, "a", encoding="utf-8") as f:
        for start in range(0, len(pending), batch):
            rows = pending[start : start + batch]
            t0 = time.perf_counter()
            completions = engine.generate(
                [samples[i] for i in rows],
                thinking=thinking,
                sampling=sampling,
                max_new_tokens=max_new_tokens,
            )
            each = (time.perf_counter() - t0) / len(rows)
            for i, completion in zip(rows, completions, strict=True):
                records[i] = _record(i, samples[i], completion, metric, each)
                f.write(json.dumps(records[i], ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(rows))
    return {"records": records, "generated": len(pending), "dropped_lines": dropped}


def score_benchmark(name: str, samples: Sequence[Sample], records: Mapping[int, dict]) -> dict:
    """The metric's aggregate (overall and per category) over the samples' stored predictions."""
    metric = _benchmark_metric(name, samples)
    ordered = [records[i] for i in range(len(samples))]
    result = evaluate_predictions(
        metric, [r["prediction"] for r in ordered], [s.meta for s in samples]
    )
    return {
        "metric": metric,
        "score": result["overall"]["score"],
        "n": len(samples),
        "overall": result["overall"],
        "per_category": result["per_category"],
        "seconds": sum(float(r.get("seconds", 0.0)) for r in ordered),
        "stopped_by_length": sum(r.get("finish_reason") == "length" for r in ordered),
    }


def benchmark_domain(name: str, samples: Sequence[Sample], set_name: str | None = None) -> str:
    """The AndesVL domain: the samples' meta['domain'], else the name's prefix, else 'other'."""
    found = samples[0].meta.get("domain") if samples else None
    return found or domain_of(name) or (set_name and domain_of(set_name)) or "other"


def _as_samples(bench) -> tuple[list[Sample], dict | None, str | None]:
    if isinstance(bench, BenchmarkSet):
        return list(bench.samples), bench.report(), bench.name
    return list(bench), None, None


def run_benchmarks(
    engine,
    benchmarks: Mapping[str, BenchmarkSet | Sequence[Sample]],
    out_dir: str | os.PathLike,
    *,
    limit: int | None = None,
    max_new_tokens: int = 64,
    thinking: bool | None = None,
    sampling=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate, score and report every benchmark; returns what results.json holds.

    engine: an infer.engine.Engine (anything with `generate(samples, thinking=, sampling=,
    max_new_tokens=)` and `batch_size`); benchmarks: name -> BenchmarkSet or list of Samples whose
    meta names the metric; limit: score only the first `limit` samples of each benchmark.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name, bench in benchmarks.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"benchmark name {name!r}: use letters, digits and _ . + - only")
        samples, reader, set_name = _as_samples(bench)
        samples = samples[:limit] if limit is not None else samples
        if not samples:
            raise ValueError(f"benchmark {name!r} has no samples to evaluate")
        path = out / PREDICTIONS_DIR / f"{name}.jsonl"
        run = generate_predictions(
            engine, name, samples, path, max_new_tokens=max_new_tokens, thinking=thinking,
            sampling=sampling, progress=progress,
        )  # fmt: skip
        results[name] = {
            "domain": benchmark_domain(name, samples, set_name),
            **score_benchmark(name, samples, run["records"]),
            "generated": run["generated"],
            "resumed": len(samples) - run["generated"],
            "dropped_lines": run["dropped_lines"],
            "reader": reader,
            "predictions": str(path.relative_to(out)),
        }
    summary = {
        "settings": {
            "limit": limit,
            "max_new_tokens": max_new_tokens,
            "thinking": thinking,
            "sampling": dataclasses.asdict(sampling) if sampling is not None else None,
        },
        "benchmarks": results,
    }
    write_reports(summary, out)
    return summary


# ---- reports ----


def _domain_order(results: Mapping[str, dict]) -> list[tuple[str, list[str]]]:
    """(domain, [benchmark names]) in DOMAINS order, other domains last, names in run order."""
    domains = list(DOMAINS) + sorted({r["domain"] for r in results.values()} - set(DOMAINS))
    groups = [(d, [n for n, r in results.items() if r["domain"] == d]) for d in domains]
    return [(d, names) for d, names in groups if names]


def _skipped(result: dict) -> int:
    stats = (result.get("reader") or {}).get("stats", {})
    return sum(v for k, v in stats.items() if k.startswith("skipped/"))


def results_markdown(summary: Mapping[str, Any]) -> str:
    """A table of scores (x100) grouped by AndesVL domain, then a per-category table."""
    results = summary["benchmarks"]
    lines = [
        "| domain | benchmark | metric | score | n | unparsable | skipped | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for domain, names in _domain_order(results):
        for k, name in enumerate(names):
            r = results[name]
            lines.append(
                f"| {domain if k == 0 else ''} | {name} | {r['metric']} | {100 * r['score']:.1f} "
                f"| {r['n']} | {r['overall']['unparsable']} | {_skipped(r)} | {r['seconds']:.1f} |"
            )
    rows = [
        f"| {name} | {cat} | {100 * agg['score']:.1f} | {agg['count']} | {agg['unparsable']} |"
        for _, names in _domain_order(results)
        for name in names
        for cat, agg in results[name]["per_category"].items()
    ]
    if rows:
        lines += [
            "",
            "| benchmark | category | score | n | unparsable |",
            "|---|---|---:|---:|---:|",
        ]
        lines += rows
    return "\n".join(lines) + "\n"


def results_chart(summary: Mapping[str, Any], path: pathlib.Path) -> None:
    """Horizontal bars of every benchmark's score (x100), coloured by domain."""
    # The object API with the Agg canvas: no pyplot, no global backend switch.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    results = summary["benchmarks"]
    order = _domain_order(results)
    names = [n for _, group in order for n in group]
    palette = colormaps["tab10"]
    domains = list(DOMAINS) + [d for d, _ in order if d not in DOMAINS]  # stable colours
    colour = {d: palette(domains.index(d) % 10) for d, _ in order}
    fig = Figure(figsize=(9, 1.4 + 0.35 * len(names)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(names)))[::-1]
    scores = [100 * results[n]["score"] for n in names]
    ax.barh(y, scores, color=[colour[results[n]["domain"]] for n in names])
    ax.set_yticks(y, names)
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (x100)")
    for yi, s in zip(y, scores, strict=True):
        ax.text(min(s + 1, 92), yi, f"{s:.1f}", va="center", fontsize=8)
    handles = [Patch(color=colour[d], label=d) for d, _ in order]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def write_reports(summary: Mapping[str, Any], out: pathlib.Path) -> None:
    """results.json, results.md and results.png in `out`, each replaced atomically (a kill or a
    full disk leaves the previous complete report)."""
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / "results.md", results_markdown(summary))
    atomic_write_with(out / "results.png", lambda tmp: results_chart(summary, tmp))
