"""Bits per weight of a sparse checkpoint, counted from the bytes stored (`andesvl-jax compress bpw`;
a deployed dense-quantized file is counted by compress/bpw.py instead).

Pruned LLM linears: per tensor the bytes of its mask, values, steps (and counts), over its K·N
weights; their total is the headline BPW. Every other tensor is reported by part (embeddings, norms,
vision tower, projector, other LLM tensors) with its stored bytes, bits per parameter and ratio to
bf16. The file's size on disk (header and metadata included) is reported too.
"""

from __future__ import annotations

import json
import pathlib
import re

from andesvl_jax.compress.sparse_io import read_sparse

PARTS = (  # first match wins; applied to the '.'-joined tensor key
    ("vision tower", r"^vision\."),
    ("projector", r"^projector\."),
    ("embeddings", r"embed"),
    ("norms", r"norm"),
    ("other LLM tensors", r"."),
)


def part_of(key: str) -> str:
    return next(name for name, pat in PARTS if re.search(pat, key))


def bpw_report(path: str | pathlib.Path) -> dict:
    """{'tensors': per pruned linear, 'linears': their total, 'parts': the rest, 'file': sizes}."""
    path = pathlib.Path(path)
    sf = read_sparse(path)
    rows = []
    for name, pk in sorted(sf.packed.items()):
        k, n = pk.shape
        rows.append(
            {
                "tensor": name,
                "pattern": pk.pattern,
                "bits": pk.bits,
                "group": pk.group,
                "weights": k * n,
                "sparsity": 1.0 - pk.kept / (k * n),
                "bytes": pk.stored_bytes,
                "bytes_by_field": {f: int(a.nbytes) for f, a in pk.fields.items()},
                "bpw": pk.bits_per_weight(),
                "ratio_to_bf16": pk.stored_bytes / (2 * k * n),
            }
        )
    weights = sum(r["weights"] for r in rows)
    stored = sum(r["bytes"] for r in rows)
    kept = sum(r["weights"] * (1 - r["sparsity"]) for r in rows)
    linears = {
        "weights": weights,
        "bytes": stored,
        "bpw": 8 * stored / max(weights, 1),
        "sparsity": 1 - kept / max(weights, 1),
        "ratio_to_bf16": stored / max(2 * weights, 1),
    }
    parts: dict[str, dict] = {}
    for key, arr in sf.dense.items():
        p = parts.setdefault(part_of(key), {"params": 0, "bytes": 0})
        p["params"] += int(arr.size)
        p["bytes"] += int(arr.nbytes)
    for p in parts.values():
        p["bits_per_param"] = 8 * p["bytes"] / max(p["params"], 1)
        p["ratio_to_bf16"] = p["bytes"] / max(2 * p["params"], 1)
    params = weights + sum(p["params"] for p in parts.values())
    file = {"bytes": path.stat().st_size, "bf16_bytes": 2 * params}
    file["ratio_to_bf16"] = file["bytes"] / file["bf16_bytes"]
    return {"tensors": rows, "linears": linears, "parts": parts, "file": file}


def format_report(rep: dict) -> str:
    lines = [
        f"{'tensor':34} {'pattern':>12} {'bits':>4} {'group':>5} {'sparsity':>8} "
        f"{'bytes':>9} {'BPW':>6} {'/bf16':>6}"
    ]
    for r in rep["tensors"]:
        lines.append(
            f"{r['tensor']:34} {r['pattern']:>12} {r['bits']:>4} {r['group']:>5} "
            f"{r['sparsity']:>8.2%} {r['bytes']:>9} {r['bpw']:>6.3f} {r['ratio_to_bf16']:>6.3f}"
        )
    t = rep["linears"]
    lines.append(
        f"{'TOTAL pruned LLM linears':34} {'':>12} {'':>4} {'':>5} {t['sparsity']:>8.2%} "
        f"{t['bytes']:>9} {t['bpw']:>6.3f} {t['ratio_to_bf16']:>6.3f}"
    )
    lines.append("")
    lines.append(
        f"{'stored as is':34} {'params':>12} {'bytes':>12} {'bits/param':>10} {'/bf16':>6}"
    )
    for name, p in sorted(rep["parts"].items()):
        lines.append(
            f"{name:34} {p['params']:>12} {p['bytes']:>12} {p['bits_per_param']:>10.2f} "
            f"{p['ratio_to_bf16']:>6.3f}"
        )
    f = rep["file"]
    lines.append(
        f"\nfile: {f['bytes']} bytes on disk, bf16 model {f['bf16_bytes']} bytes, "
        f"ratio {f['ratio_to_bf16']:.3f}"
    )
    return "\n".join(lines)


def run(args) -> int:
    """Sparse files by `bpw_report`; deployed (dense quantized) files by compress/bpw.py."""
    from andesvl_jax.compress.bpw import deployed_bits, format_bits
    from andesvl_jax.compress.deployed_io import is_deployed_file

    if is_deployed_file(args.checkpoint):
        rep = deployed_bits(args.checkpoint)
        print(format_bits(rep, per_linear=True))
    else:
        rep = bpw_report(args.checkpoint)
        print(format_report(rep))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rep, indent=1))
    return 0


def register(compress_subparsers) -> None:
    p = compress_subparsers.add_parser(
        "bpw", help="bits per weight of a sparse or deployed checkpoint, from the stored bytes"
    )
    p.add_argument("checkpoint", help="a save_sparse or save_deployed .safetensors file")
    p.add_argument("--json", help="also write the report as JSON here")
    p.set_defaults(func=run)
