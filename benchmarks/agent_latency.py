"""Per-call latency of functional tokens vs the function-name-as-text and in-context baselines.

    python benchmarks/agent_latency.py --checkpoint runs/agent/functional [--n 40 --repeats 3]

Every arm generates the *gold* answer of the same held-out requests in its own format, on the same
model, at batch 1, through the same compiled engine loop: the answer is forced by a chain
constraint (infer/constraints.py; only the next gold token is allowed), so what differs is only
the number of tokens generated and the prompt length. Arms:
  functional  `<nexa_i>(args)<nexa_end>`          (Octopus v2)
  name_text   `function_name(args)`               (the same call, name written as text)
  in_context  `function_name(args)` after a system prompt with every function's description
Prints a table (median and IQR of the wall time per call, tokens per call, ratio to functional)
and writes benchmarks/results/agent_latency.json. Timed on a shared, loaded 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

from andesvl_jax.agent.calls import FunctionCall, NoCall, format_call
from andesvl_jax.agent.evaluate import heldout_samples, in_context_prompt
from andesvl_jax.agent.functions import phone_functions
from andesvl_jax.data.sample import Message
from andesvl_jax.infer.constraints import TokenAutomaton
from andesvl_jax.infer.engine import Engine
from andesvl_jax.infer.load import load_model

STATES = 96  # chain automata padded to one shape: one compile for every request


def chain(ids: list[int], vocab: int) -> TokenAutomaton:
    """Only `ids`, in order; after the last one anything (the row has stopped)."""
    table = np.full((STATES, vocab), -1, np.int32)
    for k, t in enumerate(ids):
        table[k, t] = k + 1
    table[len(ids) :] = np.arange(len(ids), STATES, dtype=np.int32)[:, None].clip(max=STATES - 1)
    return TokenAutomaton(table, 0)


def _call(meta) -> FunctionCall | NoCall:
    c = meta["call"]
    return (
        NoCall(meta["answer"].removeprefix("<nexa_none>"))
        if c["function"] is None
        else (FunctionCall(c["function"], c["arguments"]))
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/agent_latency.json")
    args = p.parse_args(argv)
    registry = phone_functions()
    model, tok = load_model(args.checkpoint)
    engine = Engine(
        model, tok, image_max_size=112, max_prompt_tokens=2048, max_patches=256, batch_size=1
    )
    im_end = tok.special_tokens.im_end
    samples = [s for s in heldout_samples(args.n) if s.meta["api"] is not None]
    system = Message("system", in_context_prompt(registry))
    arms = {
        "functional": ("token", False),
        "name_text": ("text", False),
        "in_context": ("text", True),
    }
    results = {name: {"walls": [], "tokens": []} for name in arms}
    for rep in range(args.repeats + 1):  # repeat 0 compiles and is not counted
        for s in samples:
            for name, (style, with_system) in arms.items():
                target = tok.encode(format_call(_call(s.meta), registry, style)).tolist() + [im_end]
                prompt = s
                if with_system:
                    prompt = type(s)([system, *s.messages], s.images, meta=s.meta)
                t0 = time.perf_counter()
                (c,) = engine.generate(
                    [prompt], max_new_tokens=64, constraint=chain(target, tok.vocab_size)
                )
                wall = time.perf_counter() - t0
                assert c.token_ids == target, (name, c.token_ids, target)
                if rep:
                    results[name]["walls"].append(wall)
                    results[name]["tokens"].append(len(target))
    base = statistics.median(results["functional"]["walls"])
    base_tokens = statistics.fmean(results["functional"]["tokens"])
    rows = {}
    for name, r in results.items():
        q = statistics.quantiles(r["walls"], n=4)
        rows[name] = {
            "calls": len(r["walls"]),
            "tokens_mean": statistics.fmean(r["tokens"]),
            "wall_ms_median": 1e3 * statistics.median(r["walls"]),
            "wall_ms_iqr": [1e3 * q[0], 1e3 * q[2]],
            "tokens_ratio_to_functional": statistics.fmean(r["tokens"]) / base_tokens,
            "wall_ratio_to_functional": statistics.median(r["walls"]) / base,
        }
    print(f"{'arm':<12} {'tokens':>7} {'ms median':>10} {'IQR':>17} {'tok x':>6} {'wall x':>7}")
    for name, r in rows.items():
        print(
            f"{name:<12} {r['tokens_mean']:7.1f} {r['wall_ms_median']:10.1f} "
            f"{r['wall_ms_iqr'][0]:8.1f}-{r['wall_ms_iqr'][1]:<8.1f} "
            f"{r['tokens_ratio_to_functional']:6.2f} {r['wall_ratio_to_functional']:7.2f}"
        )
    report = {
        "checkpoint": args.checkpoint,
        "requests": len(samples),
        "repeats": args.repeats,
        "machine": f"{platform.machine()} {platform.processor()} (shared, loaded 2-core CPU)",
        "command": " ".join(sys.argv),
        "arms": rows,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
