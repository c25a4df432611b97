"""Deployed (integer) model decode vs the float model, same weights, same run (issue 12).

    python benchmarks/deployed_decode.py                      # Qwen3-0.6B shape, batch 1 (2 cores: ~15 min)
    python benchmarks/deployed_decode.py --size tiny --repeats 3

One random AndesVL of the size (the LLM of the preset, a tiny vision tower: prompts are text) is
decoded by our `generate` in the Engine's layout (`infer.engine.decoding_layout`) as
  fp32        the float model;
  <recipe>    `quantize_model(recipe)` -> activation steps calibrated on random tokens -> `deploy`
              -> linears through the kernel dispatch (`set_kernel_impl(..., "auto")`: XLA here),
for each `--recipes` entry (default W8A16 per channel and W4A16 group 32). Decode step = (T(N) -
T(1)) / (N - 1) per repeat, engines interleaved (decode.py's protocol); the table gives decode
tokens/s as median [min-max] over the repeats and the step ratio to fp32 of the same repeat, and the
stored bytes per decode step (every LLM weight read once) so the ratio can be compared with the
bytes ratio. XLA on CPU dequantizes the packed weights each step (DESIGN.md §10): expect no speedup
here; the exported runtimes (llama.cpp Q4_0/Q8_0) are where low-bit weights turn into speed.
Writes benchmarks/results/deployed_decode.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

import numpy as np
from decode import ours_runner, spread

SIZES = {"tiny": ("tiny", 64, 32), "0.6b": ("0.6b", 64, 16)}


def models(preset: str, recipes: list[str], layers: int | None = None) -> dict:
    """name -> (model in the decoding layout, LLM bytes read per decode step)."""
    import dataclasses

    import jax
    from flax import nnx

    from andesvl_jax.compress.calibrate import calibrate_activations
    from andesvl_jax.compress.deploy import deploy, set_kernel_impl
    from andesvl_jax.compress.qlinear import quantize_model
    from andesvl_jax.config import get_preset
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.models.andesvl import AndesVL

    text = {"num_layers": layers} if layers else {}
    cfg = dataclasses.replace(
        get_preset(preset, scan_layers=False, text=text), vision=get_preset("tiny").vision
    )

    def llm_bytes(model) -> int:
        return int(sum(x.nbytes for x in jax.tree.leaves(nnx.state(model.llm))))

    out = {}
    float_model = decoding_layout(AndesVL(cfg, rngs=nnx.Rngs(0)))
    out["fp32"] = (float_model, llm_bytes(float_model))
    calib = jax.random.randint(jax.random.key(1), (1, 64), 0, cfg.text.vocab_size)
    for recipe in recipes:
        model = quantize_model(AndesVL(cfg, rngs=nnx.Rngs(0)), recipe)
        calibrate_activations(model, lambda m, c=calib: m(c))
        deployed = decoding_layout(set_kernel_impl(deploy(model, separate_layers=True), "auto"))
        out[recipe] = (deployed, llm_bytes(deployed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="0.6b")
    parser.add_argument("--recipes", default="w8a16,w4a16_g32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--layers", type=int, default=None, help="LLM layers (default: the preset's; fewer fit RAM)"
    )
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "deployed_decode.json")
    )
    args = parser.parse_args()
    preset, prompt_len, new_tokens = SIZES[args.size]
    engines = models(preset, args.recipes.split(","), args.layers)
    vocab = next(iter(engines.values()))[0].cfg.text.vocab_size
    ids = np.random.default_rng(0).integers(0, vocab, (args.batch, prompt_len)).astype(np.int32)
    runners = {name: ours_runner(m, ids) for name, (m, _) in engines.items()}
    tokens = {}
    for name, run in runners.items():  # warm-up: compile both shapes
        run(1)
        tokens[name] = np.asarray(run(new_tokens)[1])
    steps = {name: [] for name in runners}
    for r in range(args.repeats):
        order = list(runners)[r % len(runners) :] + list(runners)[: r % len(runners)]
        for name in order:
            t1, _ = runners[name](1)
            tn, _ = runners[name](new_tokens)
            steps[name].append((tn - t1) / (new_tokens - 1))
    rows = []
    for name, (_, nbytes) in engines.items():
        step = np.asarray(steps[name])
        rows.append(
            {
                "engine": name,
                "llm_bytes": nbytes,
                "bytes_vs_fp32": nbytes / engines["fp32"][1],
                "decode_tok_s": spread(args.batch / step),
                "step_vs_fp32": spread(step / np.asarray(steps["fp32"])),
                "greedy_agreement_vs_fp32": float(np.mean(tokens[name] == tokens["fp32"])),
            }
        )
    print(
        f"machine: {platform.processor() or platform.machine()}, size {args.size}, batch "
        f"{args.batch}, prompt {prompt_len}, {new_tokens} new tokens, {args.repeats} repeats, "
        f"LLM layers {args.layers or 'all'}"
    )
    print(
        f"{'engine':12s} {'LLM MiB':>8s} {'bytes/fp32':>10s} {'decode tok/s':>24s} {'step/fp32':>20s}"
    )
    for r in rows:
        d, s = r["decode_tok_s"], r["step_vs_fp32"]
        print(
            f"{r['engine']:12s} {r['llm_bytes'] / 2**20:8.1f} {r['bytes_vs_fp32']:10.3f} "
            f"{d['median']:8.2f} [{d['min']:.2f}-{d['max']:.2f}] "
            f"{s['median']:8.2f} [{s['min']:.2f}-{s['max']:.2f}]"
        )
    pathlib.Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
