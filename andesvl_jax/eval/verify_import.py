"""`andesvl-jax verify-import CKPT --inputs inputs.npz --expected expected.npz`: parity of an imported checkpoint.

Loads the checkpoint, runs the forward on the given inputs (format: ../shared/fixtures/*/README.md)
and prints max abs / relative error of every array in the expected file. Float arrays pass when
max|ours - ref| <= 1e-4 * max(1, max|ref|); integer arrays (token ids) must be equal. Arrays named
`<variant prefix><name>` are recomputed with that variant's config change (e.g. `alt_gelu_tanh_`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from andesvl_jax.data.patches import pack_images

RELATIVE_TOL = 1e-4


def _images(model, inputs):
    n = sum(k.startswith("pixel_values_") for k in inputs)
    if n == 0:
        return None
    return pack_images(
        [[inputs[f"pixel_values_{i}"] for i in range(n)]], model.cfg.vision.patch_size
    )


def _flags(inputs):
    return jnp.asarray(inputs["image_flags"]) if "image_flags" in inputs else None


def _generated(model, inputs, expected_shape):
    from andesvl_jax.infer.generate import greedy_generate

    return greedy_generate(
        model, inputs["input_ids"], _images(model, inputs), _flags(inputs), expected_shape[-1]
    )


# expected-array name -> fn(model, inputs, expected shape) -> array (batch dim as in the fixtures)
OUTPUTS: dict[str, Callable] = {
    "vision_embed_out": lambda m, x, s: m.vision.embed(_images(m, x))[0],
    "vision_tower_out": lambda m, x, s: m.vision(_images(m, x))[0],
    "image_embeds": lambda m, x, s: m.encode_images(_images(m, x))[0][0],
    "inputs_embeds": lambda m, x, s: m.embed(jnp.asarray(x["input_ids"]), _images(m, x), _flags(x)),
    "logits": lambda m, x, s: m(jnp.asarray(x["input_ids"]), _images(m, x), image_flags=_flags(x))[
        0
    ],
    "generated_ids": lambda m, x, s: _generated(m, x, s),
}

# prefix -> change to the loaded config (see the SigLIP2 fixture README: the GELU caveat)
VARIANTS: dict[str, Callable] = {
    "alt_gelu_tanh_": lambda cfg: {
        "vision": dataclasses.replace(cfg.vision, hidden_act="gelu_tanh")
    },
}


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    tolerance: float
    ok: bool
    note: str = ""


def compare(name: str, ours, ref: np.ndarray) -> Check:
    ours = np.asarray(ours)
    if ours.shape != ref.shape:
        return Check(
            name,
            ref.shape,
            float("nan"),
            float("nan"),
            0.0,
            False,
            f"shape {ours.shape} != {ref.shape}",
        )
    if np.issubdtype(ref.dtype, np.integer):
        diff = (
            float(np.max(np.abs(ours.astype(np.int64) - ref.astype(np.int64)))) if ref.size else 0.0
        )
        return Check(name, ref.shape, diff, diff, 0.0, diff == 0.0)
    diff = float(np.max(np.abs(ours.astype(np.float64) - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    tol = RELATIVE_TOL * max(1.0, scale)
    return Check(name, ref.shape, diff, diff / max(scale, 1e-30), tol, diff <= tol)


def verify(
    checkpoint: str, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]
) -> list[Check]:
    """Every expected array checked against this implementation."""
    from andesvl_jax.convert.loader import load_checkpoint

    with jax.default_matmul_precision("highest"):
        models = {"": load_checkpoint(checkpoint)[0]}
        checks = []
        for full_name in sorted(expected):
            prefix = next((p for p in VARIANTS if full_name.startswith(p)), "")
            name = full_name[len(prefix) :]
            if name not in OUTPUTS:
                checks.append(
                    Check(
                        full_name,
                        expected[full_name].shape,
                        float("nan"),
                        float("nan"),
                        0.0,
                        False,
                        f"no producer for {name!r}; known: {sorted(OUTPUTS)}",
                    )
                )
                continue
            if prefix not in models:
                base = models[""].cfg
                models[prefix] = load_checkpoint(checkpoint, overrides=VARIANTS[prefix](base))[0]
            ours = OUTPUTS[name](models[prefix], inputs, expected[full_name].shape)
            checks.append(compare(full_name, ours, expected[full_name]))
    return checks


def format_table(checks: list[Check]) -> str:
    lines = [f"{'array':40s} {'shape':>16s} {'max_abs':>11s} {'max_rel':>11s} {'tol':>9s}  result"]
    for c in checks:
        lines.append(
            f"{c.name:40s} {str(c.shape):>16s} {c.max_abs:11.3e} {c.max_rel:11.3e} {c.tolerance:9.1e}  "
            f"{'ok' if c.ok else 'FAIL'} {c.note}".rstrip()
        )
    return "\n".join(lines)


def run(args) -> int:
    with np.load(args.inputs) as f:
        inputs = dict(f)
    with np.load(args.expected) as f:
        expected = dict(f)
    checks = verify(args.checkpoint, inputs, expected)
    print(format_table(checks))
    failed = [c.name for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify-import", help="check an imported AndesVL checkpoint against reference outputs"
    )
    p.add_argument("checkpoint", help="directory with config.json and *.safetensors")
    p.add_argument(
        "--inputs", required=True, help="inputs.npz (pixel_values_i, input_ids, image_flags)"
    )
    p.add_argument("--expected", required=True, help="expected.npz (reference outputs)")
    p.set_defaults(func=run)
