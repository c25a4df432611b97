"""Bits per weight of a deployed checkpoint, counted from the bytes the file stores.

Every tensor of the file is charged to what it belongs to: a deployed linear or embedding table (its packed code
planes, fp16 steps, zero points, activation step and offset all count against its K x N weights),
or a float tensor of the LLM (embeddings, norms), the vision tower or the projector, reported
separately. Nothing is estimated from the format's nominal width: the header's shapes and dtypes
give the bytes, so padding (K rounded up to the pack group) and metadata-free extras show up.
"""

from __future__ import annotations

import json
import math
import pathlib

from safetensors import safe_open

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip


def _tensor_bytes(f, key: str) -> tuple[int, int]:
    """(elements, stored bytes) of one tensor, from the header alone."""
    sl = f.get_slice(key)
    n = math.prod(sl.get_shape())
    return n, n * DTYPE_BYTES[sl.get_dtype()]


def _part(name: str, meta: dict) -> str:
    """The report line a deployed tensor set is charged to."""
    tower = name.split("/")[0]
    return f"{tower} embedding" if meta.get("embedding") else f"{tower} linears"


def deployed_bits(path: str | pathlib.Path) -> dict:
    """Per linear and per part (llm linears / llm embedding when quantized / llm other / vision /
    projector): weights (or float
    parameters), stored bytes and bits per weight; plus the file size and the ratio to bf16."""
    path = pathlib.Path(path)
    with safe_open(path, framework="np") as f:
        linears = json.loads((f.metadata() or {}).get("linears", "{}"))
        owner = {name.replace("/", "."): name for name in linears}
        per_linear = {
            name: {"weights": m["in_features"] * m["out_features"], "bytes": 0}
            for name, m in linears.items()
        }
        parts: dict[str, dict] = {}
        for key in f.keys():
            n, nbytes = _tensor_bytes(f, key)
            linear = owner.get(key.rsplit(".", 1)[0])
            if linear is not None:
                per_linear[linear]["bytes"] += nbytes
                part = _part(linear, linears[linear])
            else:
                part = "llm other" if key.startswith("llm.") else key.split(".")[0]
            acc = parts.setdefault(part, {"weights": 0, "bytes": 0})
            acc["bytes"] += nbytes
            acc["weights"] += 0 if linear is not None else n
    for name, m in per_linear.items():
        m["bpw"] = 8 * m["bytes"] / m["weights"]
        part = parts[_part(name, linears[name])]
        part["weights"] += m["weights"]
    for part in parts.values():
        part["bpw"] = 8 * part["bytes"] / max(part["weights"], 1)
    llm = parts.get("llm linears", {"weights": 0, "bytes": 0, "bpw": float("nan")})
    return {
        "file_bytes": path.stat().st_size,
        "linears": per_linear,
        "parts": parts,
        "llm_linear_bpw": llm["bpw"],
        "llm_linear_vs_bf16": llm["bpw"] / 16,
    }


def format_bits(report: dict, per_linear: bool = False) -> str:
    """The report as a table (parts; with per_linear, every deployed linear first)."""
    lines = [f"{'tensor':40s} {'weights':>12s} {'bytes':>12s} {'bpw':>7s}"]
    if per_linear:
        for name, m in report["linears"].items():
            lines.append(f"{name:40s} {m['weights']:12,d} {m['bytes']:12,d} {m['bpw']:7.3f}")
    for name, m in report["parts"].items():
        lines.append(
            f"{'[' + name + ']':40s} {m['weights']:12,d} {m['bytes']:12,d} {m['bpw']:7.3f}"
        )
    lines.append(
        f"LLM linears: {report['llm_linear_bpw']:.3f} bits per weight "
        f"({report['llm_linear_vs_bf16']:.1%} of bf16); file {report['file_bytes']:,d} bytes"
    )
    return "\n".join(lines)
