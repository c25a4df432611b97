"""mmproj.gguf in libmtmd vs our vision tower + projector: embedding error and greedy answers (issue 15).

    python benchmarks/gguf_mmproj_parity.py [--fixtures ../shared/fixtures] [--canvases 8]
        [--checkpoint runs/demo/sft --questions 32]

Part 1, per official tiny fixture: libmtmd's image embeddings of AndesVL canvases (random pixels on
random even patch grids, plus the fixture's two canvases) against ours, max and mean of
|mtmd - ours| / max|ours| per canvas, for three versions of our model that isolate the named
differences of the siglip2 -> kimik25 graph (each "emulates" one in our model):
  ours                  the model as it is (erf GELU in the ViT and the projector);
  tanh                  every GELU tanh-approximated, as kimik25 computes;
  f16kernel             our patch kernel rounded as ggml's conv_2d rounds it (F16, after the
                        pixel normalisation is folded in: export/gguf_vision_tensors.py);
  tanh+f16kernel        both;
  tanh+fp16tab+f16kernel  and the tanh GELU through ggml's CPU table (fp16 input and output):
                        what is left is summation order.
Part 2, with --presets 0.6b,1b: the same at the real vision shapes (SigLIP2-B/16, AIMv2-L/14; random
weights, a one-layer LLM of the preset's width): one random canvas of --grid patches.
Part 3, with --checkpoint (a demo workdir; copy it first if a run is writing it): the demo's held-out
image questions answered greedily (8 tokens) by our engine and by llama.cpp with libmtmd's image
embeddings; the fraction identical. Writes benchmarks/results/gguf_mmproj_parity.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def gelu_tanh_fp16_table(x):
    """ggml's CPU GELU: tanh GELU looked up at fp16(x), stored as fp16; identity / 0 past +-10."""
    y = jax.nn.gelu(x.astype(jnp.float16).astype(jnp.float32), approximate=True)
    y = y.astype(jnp.float16).astype(jnp.float32)
    return jnp.where(x >= 10.0, x, jnp.where(x <= -10.0, 0.0, y))


def with_activation(model, act: str | None):
    """Set every GeluMLP (ViT blocks and projector) of `model` to `act` (None: leave)."""
    from flax import nnx

    from andesvl_jax.models.mlp import GeluMLP

    if act is not None:
        for _, m in nnx.iter_modules(model):
            if isinstance(m, GeluMLP):
                m.act = act
    return model


def round_patch_kernel_like_ggml(model) -> None:
    """Our patch kernel replaced by what kimik25's F16 conv computes with (the folded kernel
    W / (255 std) rounded to F16, unfolded again)."""
    from andesvl_jax.data.preprocess import FLAVOUR_NORMALISATION

    std = np.asarray(FLAVOUR_NORMALISATION[model.cfg.vision.flavour][1], np.float64)
    p, c = model.cfg.vision.patch_size, model.cfg.vision.num_channels
    scale = np.repeat(255.0 * std, p * p)[:, None]  # kernel rows are ordered (channel, y, x)
    assert scale.shape[0] == c * p * p
    kernel = model.vision.patch_embed.kernel
    w = np.asarray(kernel.get_value(), np.float64) / scale
    kernel.set_value(jnp.asarray((w.astype(np.float16).astype(np.float64) * scale), jnp.float32))


def ours_tokens(model, canvas):
    from andesvl_jax.data.patches import pack_images
    from andesvl_jax.data.preprocess import ImageSpec, normalize

    v = model.cfg.vision
    packed = pack_images([[normalize(canvas, ImageSpec(v.flavour, v.patch_size))]], v.patch_size)
    return np.asarray(model.projector(model.vision(packed), packed.segment_ids)[0])[0]


def fixture_errors(src: pathlib.Path, work: pathlib.Path, n_canvases: int) -> dict:
    from andesvl_jax.export.gguf import MODEL_FILE, export_gguf
    from andesvl_jax.export.gguf_mmproj import MMPROJ_FILE, mmproj_graph
    from andesvl_jax.export.gguf_mtmd import MtmdVision
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    from andesvl_jax.infer.load import load_model
    from andesvl_jax.models import layers

    out = export_gguf(src, work / src.name, overwrite=True)
    model, _ = load_model(src)
    p = model.cfg.vision.patch_size
    rng = np.random.default_rng(0)
    canvases = [
        rng.integers(
            0, 256, (2 * p * int(rng.integers(1, 8)), 2 * p * int(rng.integers(1, 8)), 3)
        ).astype(np.uint8)
        for _ in range(n_canvases)
    ]
    inputs = np.load(src / "inputs.npz")
    canvases += [inputs[k] for k in sorted(inputs) if k.startswith("preprocessed_image_")]
    tokens = model.cfg.tokens
    vision = MtmdVision(
        LlamaCpp(out / MODEL_FILE), out / MMPROJ_FILE, (tokens.img_start, tokens.img_end)
    )
    got = [vision.image_embeddings(c, p) for c in canvases]
    layers.ACTIVATIONS["gelu_tanh_fp16_table"] = gelu_tanh_fp16_table
    variants = {"ours": (None, False)}
    if model.cfg.vision.flavour == "siglip2":
        variants |= {
            "tanh": ("gelu_tanh", False),
            "f16kernel": (None, True),
            "tanh+f16kernel": ("gelu_tanh", True),
            "tanh+fp16tab+f16kernel": ("gelu_tanh_fp16_table", True),
        }
    rows = {}
    for name, (act, f16_kernel) in variants.items():
        m, _ = load_model(src)
        with_activation(m, act)
        if f16_kernel:
            round_patch_kernel_like_ggml(m)
        errs = []
        for c, g in zip(canvases, got, strict=True):
            ours = ours_tokens(m, c)
            scale = float(np.abs(ours).max())
            errs.append(
                (float(np.abs(g - ours).max()) / scale, float(np.abs(g - ours).mean()) / scale)
            )
        rows[name] = {
            "max_rel": max(e[0] for e in errs),
            "median_max_rel": float(np.median([e[0] for e in errs])),
            "mean_rel": float(np.mean([e[1] for e in errs])),
        }
    return {
        "graph": mmproj_graph(model).projector_type,
        "canvases": [list(c.shape[:2]) for c in canvases],
        "mmproj_mib": (out / MMPROJ_FILE).stat().st_size / 2**20,
        "errors": rows,
    }


def preset_errors(preset: str, work: pathlib.Path, grid: int) -> dict:
    """Random-weight tower of `preset` (+ a one-layer LLM of its width): export, one canvas."""
    import dataclasses
    import time

    from andesvl_jax.export.gguf import write_llm
    from andesvl_jax.export.gguf_mmproj import write_mmproj
    from andesvl_jax.export.gguf_mtmd import MtmdVision
    from andesvl_jax.export.gguf_runtime import LlamaCpp
    from flax import nnx

    from andesvl_jax.config import TINY_TEXT, get_preset
    from andesvl_jax.models.andesvl import AndesVL

    cfg = get_preset(preset)
    text = dataclasses.replace(TINY_TEXT, hidden_size=cfg.text.hidden_size, num_layers=1)
    cfg = cfg.replace(text=text, tokens=get_preset("tiny").tokens)
    model = AndesVL(cfg, rngs=nnx.Rngs(0))
    t0 = time.perf_counter()
    write_mmproj(model, work / f"{preset}.mmproj.gguf")
    export_s = time.perf_counter() - t0
    write_llm(model, None, work / f"{preset}.gguf")
    p = cfg.vision.patch_size
    canvas = np.random.default_rng(0).integers(0, 256, (grid * p, grid * p, 3)).astype(np.uint8)
    t0 = time.perf_counter()
    ours = ours_tokens(model, canvas)
    ours_s = time.perf_counter() - t0
    vision = MtmdVision(LlamaCpp(work / f"{preset}.gguf"), work / f"{preset}.mmproj.gguf",
                        (cfg.tokens.img_start, cfg.tokens.img_end), n_threads=2)  # fmt: skip
    t0 = time.perf_counter()
    got = vision.image_embeddings(canvas, p)
    mtmd_s = time.perf_counter() - t0
    scale = float(np.abs(ours).max())
    return {
        "grid": grid,
        "max_rel": float(np.abs(got - ours).max()) / scale,
        "mean_rel": float(np.abs(got - ours).mean()) / scale,
        "mmproj_mib": (work / f"{preset}.mmproj.gguf").stat().st_size / 2**20,
        "export_s": export_s,
        "encode_s_ours_first_call": ours_s,
        "encode_s_mtmd": mtmd_s,
    }


def demo_greedy(checkpoint: str, work: pathlib.Path, n: int, new_tokens: int) -> dict:
    from andesvl_jax.export.gguf import MODEL_FILE, export_gguf
    from andesvl_jax.export.gguf_mmproj import MMPROJ_FILE
    from andesvl_jax.export.gguf_mtmd import MtmdVision
    from andesvl_jax.export.gguf_runtime import LlamaCpp

    from andesvl_jax.convert.workdir import load_run_config
    from andesvl_jax.data.images import load_rgb
    from andesvl_jax.data.patches import pack_images
    from andesvl_jax.data.preprocess import make_canvas, normalize
    from andesvl_jax.infer.engine import Engine
    from andesvl_jax.infer.generate import greedy_generate
    from andesvl_jax.infer.load import load_model
    from andesvl_jax.jobs.demo import held_out

    d = load_run_config(checkpoint).data
    model, tok = load_model(checkpoint)
    engine = Engine(model, tok, image_max_size=d.image_max_size, max_prompt_tokens=d.max_tokens,
                    max_patches=d.max_patches, batch_size=1)  # fmt: skip
    out = export_gguf(checkpoint, work / "demo", overwrite=True)
    t = model.cfg.tokens
    vision = MtmdVision(LlamaCpp(out / MODEL_FILE, n_ctx=d.max_tokens + new_tokens + 8),
                        out / MMPROJ_FILE, (t.img_start, t.img_end))  # fmt: skip
    spec, p = engine.spec.image, model.cfg.vision.patch_size
    identical = positions = agree = 0
    worst = 0.0
    for q in held_out(d, n):
        ex = engine.encode(q, None)
        canvases = [make_canvas(load_rgb(src), spec) for src in q.images]
        for c, im in zip(canvases, ex.images, strict=True):
            assert np.array_equal(normalize(c, spec), im.pixel_values), "canvas != encoder's image"
            ours_rows = ours_tokens(model, c)
            got = vision.image_embeddings(c, p)
            worst = max(worst, float(np.abs(got - ours_rows).max() / np.abs(ours_rows).max()))
        ids = ex.ids[None]
        images = pack_images([[im.pixel_values for im in ex.images]], p) if ex.images else None
        flags = ids == t.image_pad
        ours = np.asarray(greedy_generate(model, ids, images, flags, new_tokens))[0].tolist()
        got_ids = vision.greedy(ex.ids, t.image_pad, canvases, p, new_tokens)
        identical += got_ids == ours
        agree += sum(a == b for a, b in zip(got_ids, ours, strict=False))
        positions += new_tokens
    return {"questions": n, "new_tokens": new_tokens, "greedy_identical": identical / n,
            "token_agreement": agree / positions, "max_rel_embedding_error": worst}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=str(ROOT.parent / "shared" / "fixtures"))
    parser.add_argument("--canvases", type=int, default=8)
    parser.add_argument("--presets", default="", help="e.g. 0.6b,1b: real vision shapes")
    parser.add_argument("--grid", type=int, default=16, help="patches per side for --presets")
    parser.add_argument("--skip-fixtures", action="store_true")
    parser.add_argument("--checkpoint", help="a demo workdir stage (e.g. runs/demo/sft)")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "gguf_mmproj_parity.json")
    )
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="mmproj_parity_"))
    report = {"machine": platform.processor() or platform.machine(), "fixtures": {}}
    print(
        "| fixture | graph | model variant | max rel (max over canvases) | median of max rel | mean rel |"
    )
    print("|---|---|---|---|---|---|")
    for name in () if args.skip_fixtures else ("andesvl_siglip2_tiny", "andesvl_aimv2_tiny"):
        r = fixture_errors(pathlib.Path(args.fixtures) / name, work, args.canvases)
        report["fixtures"][name] = r
        for variant, e in r["errors"].items():
            print(f"| {name} | {r['graph']} | {variant} | {e['max_rel']:.2e} | "
                  f"{e['median_max_rel']:.2e} | {e['mean_rel']:.2e} |")  # fmt: skip
    for preset in filter(None, args.presets.split(",")):
        r = preset_errors(preset, work, args.grid)
        report.setdefault("presets", {})[preset] = r
        print(f"preset {preset}: {r}")
    if args.checkpoint:
        g = demo_greedy(args.checkpoint, work, args.questions, args.new_tokens)
        report["demo"] = {"checkpoint": args.checkpoint, **g}
        print(f"demo: {g}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
