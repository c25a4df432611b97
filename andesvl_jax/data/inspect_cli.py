"""`andesvl-jax data inspect --format F PATH`: validate a dataset and report what packing would do.

Reads every record (or --limit), encodes it as the trainer would (image preprocessing, chat
template, budgets), and prints: ok / skipped by reason, the first --show bad records of each reason
(with how many more), canvas size and aspect histograms, token and patch totals, and the packing
efficiency at the given row budgets. --errors FILE writes every bad record as JSONL (see
data/error_log.py for the line format and why it is written line by line).
"""

from __future__ import annotations

import argparse
import collections
import json
import math

import numpy as np

from andesvl_jax.data.encode import EncodeSpec, SampleEncoder
from andesvl_jax.data.error_log import BadRecordLog, format_location, record_location
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.formats import FORMATS, open_dataset
from andesvl_jax.data.packing import RowPacker
from andesvl_jax.data.preprocess import ImageSpec
from andesvl_jax.data.tokenizer import TextTokenizer

SIDE_BINS = (0, 112, 224, 448, 896, 1792, 4172)
ASPECT_BINS = (0, 0.25, 0.5, 0.8, 1.25, 2.0, 4.0, math.inf)


def _histogram(values, edges) -> dict[str, int]:
    counts = (
        np.histogram(np.asarray(values, np.float64), bins=np.asarray(edges, np.float64))[0]
        if values
        else np.zeros(len(edges) - 1, int)
    )
    return {
        f"[{lo:g},{hi:g})": int(c) for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    }


def inspect_source(
    source,
    encoder: SampleEncoder,
    batch_size: int = 8,
    limit: int | None = None,
    log: BadRecordLog | None = None,
) -> dict:
    """Encode every sample; return counts, histograms, totals and packing efficiency.

    Every bad record goes to `log` (default: an in-memory log keeping 5 per kind).
    """
    spec = encoder.spec
    log = BadRecordLog() if log is None else log
    counts = collections.Counter()
    sides, aspects, tokens, patches, downscaled = [], [], 0, 0, 0
    packer, batches, used_t, used_p = (
        RowPacker(batch_size, spec.max_tokens, spec.max_patches),
        0,
        0,
        0,
    )
    n = len(source) if limit is None else min(limit, len(source))
    for i in range(n):
        sample = None
        try:
            sample = source[i]
            ex = encoder(sample)
        except DataError as e:
            counts[f"skipped/{e.reason}"] += 1
            log.add(record_location(source, i), e, sample.images if sample is not None else ())
            continue
        counts["ok"] += 1
        tokens += ex.num_tokens
        patches += ex.num_patches
        downscaled += ex.downscaled
        for im in ex.images:
            h, w = (g * spec.image.patch_size for g in im.grid)
            sides.append(max(h, w))
            aspects.append(w / h)
        if not packer.add(ex):
            batches += 1
            used_t, used_p = used_t + sum(packer.tokens), used_p + sum(packer.patches)
            packer = RowPacker(batch_size, spec.max_tokens, spec.max_patches)
            packer.add(ex)
    if not packer.empty:
        batches += 1
        used_t, used_p = used_t + sum(packer.tokens), used_p + sum(packer.patches)
    cap_t, cap_p = batches * batch_size * spec.max_tokens, batches * batch_size * spec.max_patches
    return {
        "records": n,
        "counts": dict(sorted(counts.items())),
        "errors_shown": log.shown,
        "errors_more": {kind: log.more(kind) for kind in sorted(log.counts)},
        "errors_file": log.path,
        "images": len(sides),
        "downscaled_images": downscaled,
        "canvas_long_side_hist": _histogram(sides, SIDE_BINS),
        "aspect_w_over_h_hist": _histogram(aspects, ASPECT_BINS),
        "tokens": tokens,
        "patches": patches,
        "packed_batches": batches,
        "token_fill": used_t / cap_t if cap_t else 0.0,
        "patch_fill": used_p / cap_p if cap_p else 0.0,
    }


def _print_report(path: str, rep: dict) -> None:
    print(f"dataset {path}: {rep['records']} records")
    for k, v in rep["counts"].items():
        print(f"  {k:32s} {v}")
    for reason in sorted(rep["errors_more"]):
        shown, more = rep["errors_shown"].get(reason, []), rep["errors_more"][reason]
        print(f"  {reason} ({len(shown) + more}):")
        for entry in shown:
            print(f"    {format_location(entry)}: {entry['message']}")
        if more:
            where = f" (all in {rep['errors_file']})" if rep["errors_file"] else ""
            print(f"    ... and {more} more{where}")
    print(f"  images {rep['images']} (downscaled to fit: {rep['downscaled_images']})")
    for name in ("canvas_long_side_hist", "aspect_w_over_h_hist"):
        print(f"  {name}: " + "  ".join(f"{b}:{c}" for b, c in rep[name].items()))
    print(
        f"  tokens {rep['tokens']}  patches {rep['patches']}  "
        f"packed batches {rep['packed_batches']}"
    )
    print(f"  packing efficiency: tokens {rep['token_fill']:.1%}  patches {rep['patch_fill']:.1%}")


def run_inspect(args: argparse.Namespace) -> int:
    kw = {"data_dir": args.data_dir} if args.format == "tfds" and args.data_dir else {}
    source = open_dataset(args.format, args.path, image_root=args.image_root, **kw)
    tok = TextTokenizer.from_file(args.tokenizer) if args.tokenizer else TextTokenizer.default()
    spec = EncodeSpec(
        image=ImageSpec(
            flavour=args.flavour, patch_size=args.patch_size, max_size=args.image_max_size
        ),
        max_tokens=args.max_tokens,
        max_patches=args.max_patches,
    )
    with BadRecordLog(args.errors, args.show) as log:
        rep = inspect_source(source, SampleEncoder(tok, spec), args.batch_size, args.limit, log)
    _print_report(args.path, rep)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0 if rep["counts"].get("ok", 0) or not rep["records"] else 1


def _non_negative(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="dataset tools")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("inspect", help="validate a dataset; counts, histograms, packing efficiency")
    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument("path", help="file (jsonl/json/arrayrecord) or, for tfds, name[:split]")
    p.add_argument("--image-root", default=None, help="directory image paths are relative to")
    p.add_argument("--data-dir", default=None, help="tfds data_dir")
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer.json (default: the embedded tiny tokenizer)"
    )
    p.add_argument("--flavour", default="aimv2", choices=["aimv2", "siglip2"])
    p.add_argument("--patch-size", type=int, default=14)
    p.add_argument("--image-max-size", type=int, default=1792)
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--max-patches", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the report as JSON here")
    p.add_argument(
        "--errors",
        default=None,
        metavar="FILE",
        help="write every bad record here as JSONL (file, line|record, image, kind, message)",
    )
    p.add_argument(
        "--show",
        type=_non_negative,
        default=5,
        metavar="N",
        help="bad records printed per kind (the rest are counted; default 5)",
    )
    p.set_defaults(func=run_inspect)
