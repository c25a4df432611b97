"""Data pipeline throughput and packing efficiency (measured, not asserted).

    .venv/bin/python benchmarks/data_throughput.py [--batches 20] [--workers 2] \
        [--out benchmarks/results/data_throughput.json]

Rows: the synthetic mixtures ('all' under the SFT stage, 'joint' and 'multitask' under their own
stages, whose packer tops rows up with text-only samples; 'joint' also with that text fill off)
and a generated folder of real JPEGs (LLaVA JSONL), single-process and with multiprocess prefetch;
samples/s and packed batches/s; token/patch fill of our NaViT packing vs a
pad-one-image-per-sequence baseline (each sample alone in a row, as big_vision/MaxText).
Budgets: 4096 patches / 8192 tokens per row; synthetic images drawn at 112-448 px (--sides).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np
from PIL import Image

from andesvl_jax.data.encode import SampleEncoder
from andesvl_jax.data.formats import open_dataset
from andesvl_jax.data.pipeline import DataConfig, make_dataset, pipeline_stats
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext
from andesvl_jax.data.tokenizer import TextTokenizer

MAX_TOKENS, MAX_PATCHES, BATCH = 8192, 4096, 4


def make_jpeg_folder(root: pathlib.Path, n: int = 200, seed: int = 0) -> pathlib.Path:
    """n random-size JPEG photos-like images + a LLaVA JSONL pointing at them."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        w, h = int(rng.integers(160, 900)), int(rng.integers(160, 900))
        base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        img.save(root / "img" / f"{i}.jpg", quality=90)
        lines.append(
            json.dumps(
                {
                    "image": f"img/{i}.jpg",
                    "conversations": [
                        {"from": "human", "value": "<image>\nDescribe the picture."},
                        {
                            "from": "gpt",
                            "value": "A colourful blurry pattern " * int(rng.integers(1, 6)),
                        },
                    ],
                }
            )
        )
    path = root / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def config(stage: str, workers: int = 0, text_fill: bool | None = None) -> DataConfig:
    return DataConfig(
        stage=stage,
        batch_size=BATCH,
        max_tokens=MAX_TOKENS,
        max_patches=MAX_PATCHES,
        image_max_size=896,
        worker_count=workers,
        seed=0,
        max_misses=32,
        text_fill=text_fill,
    )


def run(source, cfg: DataConfig, batches: int) -> dict:
    it = iter(make_dataset(source, cfg))
    next(it)  # warm-up (worker start-up)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    st_before = pipeline_stats(it.get_state())
    if hasattr(it, "close"):
        it.close()
    samples = st_before["ok"] * batches / st_before["batches"]
    return {
        "samples_per_s": samples / dt,
        "batches_per_s": batches / dt,
        "token_fill": st_before["token_fill"],
        "patch_fill": st_before["patch_fill"],
    }


def pad_one_per_row(source, cfg: DataConfig, n: int = 200) -> dict:
    """Baseline fill: each sample alone in a row of the same budgets."""
    enc = SampleEncoder(TextTokenizer.default(), cfg.encode_spec())
    exs = [enc(source[i]) for i in range(n)]
    return {
        "token_fill": float(np.mean([e.num_tokens / MAX_TOKENS for e in exs])),
        "patch_fill": float(np.mean([e.num_patches / MAX_PATCHES for e in exs])),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/data_throughput.json")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    ap.add_argument("--sides", default="112,448", help="synthetic image side range, px")
    args = ap.parse_args()
    rows = []
    ctx = TaskContext(*(int(v) for v in args.sides.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        jpegs = open_dataset("llava", make_jpeg_folder(pathlib.Path(tmp)))
        cases = [  # (name, source, stage, text_fill override)
            ("synthetic all / sft", SyntheticSource("all", size=100_000, ctx=ctx), "sft", None),
            (
                "synthetic joint / joint",
                SyntheticSource("joint", size=100_000, ctx=ctx),
                "joint",
                None,
            ),
            (
                "synthetic joint, no text fill",
                SyntheticSource("joint", size=100_000, ctx=ctx),
                "joint",
                False,
            ),
            (
                "synthetic multitask / multitask",
                SyntheticSource("multitask", size=100_000, ctx=ctx),
                "multitask",
                None,
            ),
            ("jpeg folder (160-900px) / sft", jpegs, "sft", None),
        ]
        for name, src, stage, text_fill in cases:
            if args.only not in name:
                continue
            base = pad_one_per_row(src, config(stage))
            for workers in sorted({0, args.workers}):
                cfg = config(stage, workers, text_fill)
                r = run(src, cfg, args.batches)
                rows.append(
                    {
                        "data": name,
                        "workers": workers,
                        "text_fill": cfg.resolved("text_fill"),
                        **r,
                        "pad1_token_fill": base["token_fill"],
                        "pad1_patch_fill": base["patch_fill"],
                    }
                )
    print(f"budgets: {MAX_PATCHES} patches / {MAX_TOKENS} tokens per row, batch {BATCH}")
    print(
        f"{'data / stage':32s} {'workers':>7s} {'samples/s':>10s} {'batches/s':>10s} "
        f"{'tok fill':>9s} {'patch fill':>10s} {'pad1 tok':>9s} {'pad1 patch':>10s}"
    )
    for r in rows:
        print(
            f"{r['data']:32s} {r['workers']:7d} {r['samples_per_s']:10.1f} "
            f"{r['batches_per_s']:10.2f} {r['token_fill']:9.1%} {r['patch_fill']:10.1%} "
            f"{r['pad1_token_fill']:9.1%} {r['pad1_patch_fill']:10.1%}"
        )
    result = {
        "max_patches": MAX_PATCHES,
        "max_tokens": MAX_TOKENS,
        "batch_size": BATCH,
        "rows": rows,
    }
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
