"""The compiled decode program of the checkout on PYTHONPATH, normalised for diffing, with op counts.

    PYTHONPATH=. python benchmarks/decode_hlo.py --size 0.6b --batch 8 --out /tmp/new.hlo
    git archive 2dc3963 | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/decode_hlo.py --size 0.6b --batch 8 --out /tmp/old.hlo
    diff /tmp/old.hlo /tmp/new.hlo

Compiles `infer.generate._generate` (prefill + `lax.while_loop` decode, greedy, as
benchmarks/decode.py calls it: prompt 64, 16 new tokens) for the `size` preset's LLM in the decoding
layout (`infer.engine.decoding_layout`) from abstract parameters, so nothing is allocated. Writes XLA's
optimised HLO with instruction names, metadata and backend configs stripped (two builds of the same
program then compare equal line by line), and prints the instruction counts of each while loop body
(copies, dynamic-update-slices, dots, ...: a copied KV cache shows as cache-shaped `copy`s).
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re

import numpy as np
from decode import use_checkout_kernels  # benchmarks/ is the script's directory

OPCODE = re.compile(r"\s([a-z][a-z0-9\-]*)\(")
CALLEE = re.compile(r"(?:calls|to_apply|body|condition|branch_computations)=\{?%?([\w.\-]+)")
COUNTED = ("copy", "dynamic-update-slice", "dynamic-slice", "transpose", "concatenate", "dot")


def computations(hlo: str) -> dict[str, list[str]]:
    """Computation name -> its instruction lines."""
    comps, current = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head:
            current = comps.setdefault(head.group(1), [])
        elif line.startswith("}"):
            current = None
        elif current is not None and " = " in line:
            current.append(line.strip())
    return comps


def opcode(line: str) -> str:
    found = OPCODE.search(line.split(" = ", 1)[1])
    return found.group(1) if found else "?"


def op_counts(comps, name: str, seen: set | None = None) -> collections.Counter:
    """Instructions of computation `name` and of everything it calls (fusions, nested loops)."""
    seen = set() if seen is None else seen
    counts = collections.Counter()
    if name in seen or name not in comps:
        return counts
    seen.add(name)
    for line in comps[name]:
        counts[opcode(line)] += 1
        for callee in CALLEE.findall(line):
            counts += op_counts(comps, callee, seen)
    return counts


def normalised(hlo: str) -> str:
    """Instruction lines with names, metadata, backend configs and stack frames stripped."""
    keep = [ln for ln in hlo.splitlines() if " = " in ln or re.match(r"^(?:ENTRY )?%.*\{$", ln)]
    text = "\n".join(keep)
    for pattern in (
        r", metadata=\{[^}]*\}",
        r", (?:frontend_attributes|backend_config)=\{[^}]*\}",
        r"stack_frame_id=\d+",
    ):
        text = re.sub(pattern, "", text)
    return re.sub(r"%[\w.\-]+", "%_", text) + "\n"


def compiled_decode(size: str, batch: int, prompt_len: int = 64, new_tokens: int = 16) -> str:
    """Optimised HLO text of `_generate` for `size` at `batch` rows (abstract parameters)."""
    from flax import nnx

    from andesvl_jax.config import TINY_VISION, get_preset
    from andesvl_jax.infer import generate as gen
    from andesvl_jax.infer.engine import decoding_layout
    from andesvl_jax.infer.sampling import SamplingBatch, SamplingParams
    from andesvl_jax.models.andesvl import AndesVL

    if not hasattr(gen, "_generate"):
        raise RuntimeError(f"{gen.__file__} has no _generate: this tool needs updating")
    cfg = get_preset(size).replace(vision=TINY_VISION)  # text-only prompts: vision is not run
    graphdef, state = nnx.split(
        nnx.eval_shape(lambda: decoding_layout(AndesVL(cfg, rngs=nnx.Rngs(0))))
    )
    lowered = gen._generate.lower(
        graphdef,
        state,
        np.zeros((batch, prompt_len), np.int32),
        np.full((batch,), prompt_len, np.int32),
        None,
        None,
        SamplingBatch.of([SamplingParams()] * batch),
        np.asarray((-1,), np.int32),
        np.int32(0),
        max_new=new_tokens,
        chunk=prompt_len,
        greedy=True,
        penalised=False,
        stream=False,
    )
    return lowered.compile().as_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="0.6b")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", required=True, help="normalised HLO text is written here")
    args = parser.parse_args()
    package = use_checkout_kernels()
    hlo = compiled_decode(args.size, args.batch)
    pathlib.Path(args.out).write_text(normalised(hlo))
    comps = computations(hlo)
    print(
        f"{package}: {args.size} batch {args.batch}, {sum(map(len, comps.values()))} instructions"
    )
    for line in (ln for lines in comps.values() for ln in lines if opcode(ln) == "while"):
        body = re.search(r"body=%?([\w.\-]+)", line).group(1)
        counts = op_counts(comps, body)
        copies = [
            ln.split(" = ", 1)[1].split(" copy(")[0] for ln in comps[body] if opcode(ln) == "copy"
        ]
        print(
            f"  while body {body}: {len(comps[body])} top-level instructions; with callees "
            + ", ".join(f"{op} {counts[op]}" for op in COUNTED)
            + f"; top-level copies: {', '.join(copies) or 'none'}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
