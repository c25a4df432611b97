"""Speculative decoding on a trained target: acceptance length tau and wall-clock speedup over plain
greedy decoding, for EAGLE chains and EAGLE-2 trees with EAGLE- and HASS-trained heads.

    python benchmarks/speculative.py --target /work/runs/demo/sft \\
        --head eagle=runs/tiny/eagle/draft --head hass=runs/tiny/hass/draft

Prompts: held-out (split "eval") samples of the demo's synthetic tasks (count / colour /
ocr_digits; every prompt holds one image), batch 1, greedy. Two modes:
  * `answer`: the chat answer, stopping at <|im_end|> (max --max-new tokens);
  * `long`: exactly --long-new tokens, stop tokens off (the model continues past its answer).
Every configuration first runs once (compiles, and its tokens are checked equal to plain greedy's:
the `same` column), then the repeats time all configurations interleaved (order rotated each
repeat); a figure is the median over repeats [min-max]. T = wall time for all prompts of a mode
(prefill included); speedup = T(plain) / T(config) within the same repeat. tau = tokens per target
verification step INCLUDING the bonus token (the first token, from the prefill, is not counted).
Writes benchmarks/results/speculative.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results" / "speculative.json"


def parse_tree(text: str):
    from andesvl_jax.infer.speculative.params import TreeParams

    if text.startswith("chain"):
        return TreeParams.chain(int(text[5:]))
    k, d, n = (int(x) for x in text.split("/"))
    return TreeParams(k, d, n).validate()


def synthetic_pair(width: int, layers: int):
    """A random tiny-vocabulary target of `width` x `layers` whose attention and MLP outputs are
    scaled by 0.3 (its next token depends mostly on the current one), and a head that predicts
    exactly that part (fc = [I; 0], the layer's outputs zeroed): a high-acceptance draft whose cost
    is one layer, to time the speculative mechanics on a target worth drafting for."""
    import dataclasses

    import jax.numpy as jnp
    from flax import nnx

    from andesvl_jax.config import get_preset
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.models.andesvl import AndesVL
    from andesvl_jax.models.eagle import new_draft_head

    cfg = get_preset("tiny")
    text = dataclasses.replace(
        cfg.text,
        hidden_size=width,
        intermediate_size=3 * width,
        num_layers=layers,
        num_heads=width // 64,
        num_kv_heads=max(width // 128, 1),
        head_dim=64,
    )
    model = AndesVL(cfg.replace(text=text, scan_layers=False), rngs=nnx.Rngs(0))
    for layer in model.llm.layers:
        for lin in (layer.attn.o, layer.mlp.down):
            lin.kernel[...] = lin.kernel[...] * 0.3
    head = new_draft_head(text, seed=1)
    head.fc.kernel[...] = jnp.concatenate([jnp.eye(width), jnp.zeros((width, width))], 0)
    for lin in (head.layer.attn.o, head.layer.mlp.down):
        lin.kernel[...] = jnp.zeros_like(lin.kernel[...])
    return decoding_layout(model), head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", help="training workdir of the target")
    ap.add_argument("--head", action="append", default=[], help="NAME=DRAFT_DIR (repeatable)")
    ap.add_argument(
        "--synthetic",
        help="WIDTH,LAYERS: instead of --target/--head, a random predictable target of that size "
        "with an oracle head (synthetic_pair; measures the mechanics, not a trained draft)",
    )
    ap.add_argument(
        "--trees",
        default="chain4,chain7,4/3/10,10/7/60",
        help="comma-separated trees: chainD or top_k/depth/total",
    )
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--long-new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="answer,long")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)

    from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.infer.speculative.draft_io import load_draft

    if args.synthetic:
        from andesvl_jax.data.tokenizer import TextTokenizer

        width, layers = (int(x) for x in args.synthetic.split(","))
        model, oracle = synthetic_pair(width, layers)
        tok = TextTokenizer.default()
    else:
        model, tok = load_model(args.target)
    engine = Engine(model, tok, image_max_size=112, batch_size=1, prefill_chunk=128)
    src = SyntheticSource(
        {"count": 1.0, "colour": 0.5, "ocr_digits": 1.5},
        size=max(64, args.prompts),
        seed=7,
        split="eval",
        ctx=TaskContext(56, 112),
    )
    samples = [src[i] for i in range(args.prompts)]
    heads = {"oracle": oracle} if args.synthetic else {}
    for spec in args.head:
        name, path = spec.split("=", 1)
        heads[name] = load_draft(path)
    trees = [t for t in args.trees.split(",") if t]
    configs = [("plain", None, None)]
    for name, head in heads.items():
        for t in trees:
            configs.append((f"{name} {t}", head, parse_tree(t)))
    modes = {"answer": args.max_new, "long": args.long_new}
    stops = engine.stop_tokens

    def run(mode, head, tree):
        engine.stop_tokens = stops if mode == "answer" else ()
        out = engine.generate(samples, max_new_tokens=modes[mode], speculative=head, tree=tree)
        steps = sum(int(s.steps.sum()) for s in engine.spec_stats)
        made = sum(int(s.tokens.sum()) for s in engine.spec_stats)
        return [c.token_ids for c in out], steps, made

    rows = []
    for mode in [m for m in args.modes.split(",") if m]:
        reference, stats = None, {}
        for label, head, tree in configs:  # warm-up: compile + exactness + tau
            tokens, steps, made = run(mode, head, tree)
            if reference is None:
                reference = tokens
            stats[label] = dict(
                same=tokens == reference,
                tau=made / steps if steps else None,
                tokens=sum(len(t) for t in tokens),
            )
        times = {label: [] for label, _, _ in configs}
        for r in range(args.repeats):
            order = configs[r % len(configs) :] + configs[: r % len(configs)]
            for label, head, tree in order:
                t0 = time.perf_counter()
                run(mode, head, tree)
                times[label].append(time.perf_counter() - t0)
        for label, _, _ in configs:
            t = np.array(times[label])
            speed = np.array(times["plain"]) / t
            rows.append(
                dict(
                    mode=mode,
                    config=label,
                    **stats[label],
                    time_s=[float(np.median(t)), float(t.min()), float(t.max())],
                    speedup=[float(np.median(speed)), float(speed.min()), float(speed.max())],
                )
            )
    print(
        f"{'mode':7} {'config':22} {'same':5} {'tau':>5} {'tokens':>6}  {'T s (med [min-max])':24} speedup"
    )
    for row in rows:
        tau = "-" if row["tau"] is None else f"{row['tau']:.2f}"
        t, s = row["time_s"], row["speedup"]
        print(
            f"{row['mode']:7} {row['config']:22} {str(row['same']):5} {tau:>5} {row['tokens']:>6}  "
            f"{t[0]:6.3f} [{t[1]:.3f}-{t[2]:.3f}]     {s[0]:.2f}x [{s[1]:.2f}-{s[2]:.2f}]"
        )
    record = dict(
        command="python benchmarks/speculative.py " + " ".join(argv or os.sys.argv[1:]),
        machine=f"{platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()}",
        target=args.target or f"synthetic {args.synthetic}",
        heads=args.head,
        prompts=args.prompts,
        repeats=args.repeats,
        rows=rows,
    )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
