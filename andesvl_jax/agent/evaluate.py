"""Agent evaluation on the held-out split: accuracy per API and language, no-call precision/recall,
and latency (tokens generated, wall time per call at batch 1).

Definitions (docs/agent.md): function accuracy = the predicted function (None for a text answer)
equals the true one, over every request; argument exact match = all arguments equal, over the
requests with a true call whose function was predicted right; full-call accuracy = the function and
every argument right (a negative: any text answer), over every request; no-call precision / recall
treat "answer in text" as the positive class; invalid = a generated call that failed to parse or
broke the schema (reported, never executed).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

from andesvl_jax.agent.calls import FunctionCall
from andesvl_jax.agent.functions import FunctionRegistry
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext

EVAL_CONTEXT = TaskContext(56, 84)  # what experiments/agent.py trains at


def heldout_samples(n: int, style: str = "token", seed: int = 0, split: str = "heldout") -> list:
    """n requests of `split` ('heldout': unseen objects / values; 'train': the training
    distribution), rendered from the eval seed stream (never the training samples themselves)."""
    task = ("agent_" if style == "token" else "agent_text_") + split
    source = SyntheticSource({task: 1.0}, size=n, seed=seed, split="eval", ctx=EVAL_CONTEXT)
    return [source[i] for i in range(n)]


def _predicted_function(p) -> str | None:
    if p.call is None:
        return "<invalid>"
    return p.call.name if isinstance(p.call, FunctionCall) else None


def _rates(rows: list[dict]) -> dict:
    n = len(rows)
    with_call = [r for r in rows if r["gold"] is not None and r["pred"] == r["gold"]]
    return {
        "n": n,
        "function_accuracy": sum(r["pred"] == r["gold"] for r in rows) / max(n, 1),
        "argument_exact_match": sum(r["args_ok"] for r in with_call) / max(len(with_call), 1),
        "full_call_accuracy": sum(r["full"] for r in rows) / max(n, 1),
        "invalid": sum(r["pred"] == "<invalid>" for r in rows) / max(n, 1),
    }


def score(predictions, samples) -> dict:
    """Metrics overall, per API (None = negatives) and per language."""
    rows = []
    for p, s in zip(predictions, samples, strict=True):
        gold = s.meta["call"]
        pred = _predicted_function(p)
        args_ok = isinstance(p.call, FunctionCall) and p.call.args == gold.get("arguments")
        full = (pred == gold["function"]) and (gold["function"] is None or args_ok)
        rows.append(
            {
                "gold": gold["function"],
                "pred": pred,
                "args_ok": bool(args_ok),
                "full": bool(full),
                "language": s.meta["language"],
            }
        )
    tp = sum(r["gold"] is None and r["pred"] is None for r in rows)
    fp = sum(r["gold"] is not None and r["pred"] is None for r in rows)
    fn = sum(r["gold"] is None and r["pred"] is not None for r in rows)
    by_api, by_lang = defaultdict(list), defaultdict(list)
    for r in rows:
        by_api[r["gold"] or "(no call)"].append(r)
        by_lang[r["language"]].append(r)
    return {
        **_rates(rows),
        "no_call_precision": tp / max(tp + fp, 1),
        "no_call_recall": tp / max(tp + fn, 1),
        "per_api": {k: _rates(v) for k, v in sorted(by_api.items())},
        "per_language": {k: _rates(v) for k, v in sorted(by_lang.items())},
    }


def latency(predictor, samples, repeats: int = 1) -> dict:
    """Batch-1 latency over `samples`; a first pass over all of them (not counted) compiles every
    prompt-length bucket, so no compile is timed."""
    for s in samples:
        predictor.predict_samples([s])
    walls, tokens = [], []
    for _ in range(repeats):
        for s in samples:
            t0 = time.perf_counter()
            (p,) = predictor.predict_samples([s])
            walls.append(time.perf_counter() - t0)
            tokens.append(p.tokens)
    q = statistics.quantiles(walls, n=4)
    return {
        "calls": len(walls),
        "tokens_mean": statistics.fmean(tokens),
        "wall_ms_median": 1e3 * statistics.median(walls),
        "wall_ms_iqr": [1e3 * q[0], 1e3 * q[2]],
    }


def in_context_prompt(registry: FunctionRegistry) -> str:
    """The in-context baseline's system prompt: every function's name, description and arguments."""
    lines = ["You can call these functions; answer with name('arg', ...) or plain text."]
    for f in registry.functions:
        args = ", ".join(
            f"{a.name}: {a.type}" + (f" in {list(a.enum)}" if a.enum else "") for a in f.arguments
        )
        lines.append(f"{f.name}({args}): {f.description}")
    return "\n".join(lines)


def examples(predictions, samples, k: int = 5) -> list[dict]:
    return [
        {
            "request": s.meta["request"],
            "gold": s.meta["answer"],
            "generated": p.text,
            "error": p.error,
        }
        for p, s in list(zip(predictions, samples, strict=True))[:k]
    ]


def evaluate_checkpoint(
    checkpoint,
    registry: FunctionRegistry,
    *,
    n: int = 400,
    style: str = "token",
    constrained: bool = True,
    latency_calls: int = 40,
    in_context: bool = False,
    batch_size: int = 16,
    split: str = "heldout",
) -> dict:
    """The held-out report of one trained run (docs/agent.md's table rows)."""
    from andesvl_jax.agent.predict import AgentPredictor
    from andesvl_jax.data.sample import Message
    from andesvl_jax.infer.load import load_model

    model, tok = load_model(checkpoint)
    predictor = AgentPredictor(
        model,
        tok,
        registry,
        style=style,
        constrained=constrained and style == "token",
        batch_size=batch_size,
    )
    samples = heldout_samples(n, style, split=split)
    if in_context:
        system = Message("system", in_context_prompt(registry))
        for s in samples:
            s.messages.insert(0, system)
    t0 = time.perf_counter()
    predictions = predictor.predict_samples(samples)
    elapsed = time.perf_counter() - t0
    report = {
        "checkpoint": str(checkpoint),
        "style": style,
        "constrained": predictor.constraint is not None,
        "in_context": in_context,
        "split": split,
        **score(predictions, samples),
        "batched_wall_s": elapsed,
        "examples": examples(predictions, samples),
    }
    if latency_calls:
        predictor.engine.batch_size = 1
        report["latency"] = latency(predictor, samples[:latency_calls])
    return report
