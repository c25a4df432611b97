"""1+N LoRA decode speed: a batch of 8 requests on 8 different adapters vs the same batch with no
adapters, same base weights, same engine code, interleaved repeats.

    python benchmarks/lora_decode.py                      # Qwen3-0.6B shape, random weights (~10 min on 2 cores)
    python benchmarks/lora_decode.py --size tiny --repeats 3

The base is a random AndesVL of the preset (fp32); the adapter engine has `--slots` slots of max
rank `--rank` on every LLM attention and MLP linear, filled with `--slots` random adapters (rank
`--rank`, B random), and row i of the batch uses adapter i mod slots. Text-only prompts of the same
length, greedy. Timing as benchmarks/decode.py: T(n) = one `Engine.generate` call producing n tokens
per row (compile excluded by a warm-up of every shape); decode step = (T(N) - T(1)) / (N - 1);
decode tokens/s = batch / step. Every repeat times both engines (order alternating), and the ratio
(adapters / none) is formed per repeat; reported as median [min-max] over the repeats. Prints a
table and writes benchmarks/results/lora_decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import numpy as np
from flax import nnx

from andesvl_jax.compress.lora import apply_lora, lora_modules, lora_rules
from andesvl_jax.compress.lora_files import model_adapter
from andesvl_jax.config import get_preset
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.tokenizer import TextTokenizer
from andesvl_jax.infer.engine import Engine
from andesvl_jax.infer.sampling import SamplingParams
from andesvl_jax.models.andesvl import AndesVL

RESULTS = pathlib.Path(__file__).parent / "results" / "lora_decode.json"


def random_adapter(cfg, rank: int, seed: int):
    """A random rank-`rank` adapter on every LLM linear of a model of `cfg` (abstract base: only
    the factors are materialised)."""
    model = nnx.eval_shape(lambda: AndesVL(cfg, rngs=nnx.Rngs(0)))
    apply_lora(model, lora_rules("llm", rank=rank, alpha=2.0 * rank), seed=seed)
    for i, (_, m) in enumerate(lora_modules(model)):
        ka, kb = jax.random.split(jax.random.key(1000 * seed + i))
        m.lora_a.set_value(jax.random.uniform(ka, m.lora_a.shape, minval=-0.03, maxval=0.03))
        m.lora_b.set_value(jax.random.normal(kb, m.lora_b.shape) * 0.01)
    return model_adapter(model)


def timed(engine, samples, new, adapter):
    start = time.perf_counter()
    out = engine.generate(samples, sampling=SamplingParams(), max_new_tokens=new, adapter=adapter)
    elapsed = time.perf_counter() - start
    assert all(len(c.token_ids) == new for c in out), "a row stopped early"
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="0.6b", choices=("tiny", "0.6b"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    cfg = get_preset(args.size, scan_layers=False)
    tok = TextTokenizer.default()
    model = AndesVL(cfg, rngs=nnx.Rngs(0))
    plain = Engine(model, tok, batch_size=args.batch, max_prompt_tokens=128)
    lora = Engine(
        model,
        tok,
        batch_size=args.batch,
        max_prompt_tokens=128,
        adapter_slots=args.slots,
        adapter_max_rank=args.rank,
    )
    del model
    for s in range(args.slots):
        lora.load_adapter(f"s{s}", random_adapter(cfg, args.rank, s + 1))
    words = "how many red squares are in the picture".split()
    samples = [
        Sample([Message("user", " ".join(words[: 4 + i % 4]))], []) for i in range(args.batch)
    ]
    names = [f"s{i % args.slots}" for i in range(args.batch)]
    engines = {"none": (plain, None), "adapters": (lora, names)}
    for eng, adapter in engines.values():  # compile both shapes of both engines
        for n in (1, args.new_tokens):
            timed(eng, samples, n, adapter)
    rows = []
    for r in range(args.repeats):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        rate = {}
        for name in order:
            eng, adapter = engines[name]
            t1 = timed(eng, samples, 1, adapter)
            tn = timed(eng, samples, args.new_tokens, adapter)
            rate[name] = args.batch / ((tn - t1) / (args.new_tokens - 1))
        rows.append({**rate, "ratio": rate["adapters"] / rate["none"], "load": os.getloadavg()[0]})
        print(f"repeat {r}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()), flush=True)

    def summary(key):
        v = np.array([row[key] for row in rows])
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}

    result = {
        "command": "python benchmarks/lora_decode.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {jax.default_backend()}",
        "jax": jax.__version__,
        "settings": vars(args),
        "adapter_bytes_fp16": lora.adapters.info["s0"]["bytes_fp16"],
        "slot_table_bytes": lora.adapters.nbytes(),
        "repeats": rows,
        "decode_tok_s_none": summary("none"),
        "decode_tok_s_adapters": summary("adapters"),
        "ratio": summary("ratio"),
    }
    print(f"\n{'engine':<10} {'decode tok/s median [min-max]':>32}")
    for key in ("none", "adapters"):
        s = summary(key)
        print(f"{key:<10} {s['median']:>14.2f} [{s['min']:.2f}-{s['max']:.2f}]")
    s = result["ratio"]
    print(f"ratio adapters/none: {s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}], n={len(rows)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
