"""Does the LiteRT runtime multiply int8 weight codes of -128 correctly? (export --int8-full-range)

    python benchmarks/litert_int8_range.py

TFLite's quantization spec keeps int8 weights in [-127, 127]; GPTQ/QAT deployed W8 models hold a
few codes at -128. One FULLY_CONNECTED [M=8, K=256] x [256, N=64] with half of every other column of
codes at -128 is converted with the int8 recipe, and run (ai_edge_litert, CPU) twice: as the
converter re-derives it, and with our codes and steps patched in (export/litert_w8.patch_int8). The
error to the float product x @ (codes * steps) is printed for all-positive, all-negative and mixed
activation rows (30 draws): a mishandled -128 (int16 pair overflow) would show as an error of order
1 in its column, not the ~1e-3 of int8 activation rounding. Writes
benchmarks/results/litert_int8_range.json. Measured, not asserted; this machine only (x86).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
K, N, M, DRAWS = 256, 64, 8, 30


def main() -> None:
    import jax.numpy as jnp
    from ai_edge_litert.interpreter import Interpreter
    from andesvl_jax.export.litert_convert import Signature, TensorSpec, to_tflite
    from andesvl_jax.export.litert_w8 import Int8Weight, patch_int8

    rng = np.random.default_rng(0)
    codes = rng.integers(-127, 128, (N, K)).astype(np.int8)
    codes[:, ::2] = np.where(rng.random((N, K // 2)) < 0.5, -128, codes[:, ::2])
    steps = (rng.random(N) * 0.01 + 0.001).astype(np.float16).astype(np.float32)
    w = (codes.astype(np.float32) * steps[:, None]).T  # [K, N]
    sig = Signature(
        "serving_default",
        lambda ws, x: (jnp.matmul(x, ws[0]),),
        (TensorSpec("x", (M, K), "float32"),),
        ("y",),
    )
    rows = []
    for label, patch in (("converter (re-derived)", False), ("ours, -128 kept", True)):
        tflite = to_tflite([w], [sig], quant="int8")
        if patch:
            tflite = patch_int8(tflite, [Int8Weight("fc", codes, steps)])
        run = Interpreter(model_content=tflite).get_signature_runner("serving_default")
        row = {"weights": label}
        for name, sign in (("positive", 1.0), ("negative", -1.0)):
            x = sign * np.abs(rng.standard_normal((M, K))).astype(np.float32)
            ref = x @ w
            row[f"{name}_col_rel_err_max"] = float(
                (np.abs(run(x=x)["y"] - ref).max(0) / np.abs(ref).max()).max()
            )
        errs = []
        for t in range(DRAWS):
            x = np.random.default_rng(100 + t).standard_normal((M, K)).astype(np.float32)
            ref = x @ w
            errs.append(float(np.abs(run(x=x)["y"] - ref).max() / np.abs(ref).max()))
        row["mixed_rel_err_median"], row["mixed_rel_err_max"] = float(np.median(errs)), max(errs)
        rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "litert_int8_range.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| weights | x > 0: max col rel err | x < 0 | mixed x: median (max), 30 draws |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['weights']} | {r['positive_col_rel_err_max']:.1e} | "
              f"{r['negative_col_rel_err_max']:.1e} | {r['mixed_rel_err_median']:.1e} "
              f"({r['mixed_rel_err_max']:.1e}) |")


if __name__ == "__main__":
    main()
