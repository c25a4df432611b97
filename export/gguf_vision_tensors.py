"""Our vision tower + projector -> the tensors of a llama.cpp (libmtmd) projector graph.

Two graphs (DESIGN.md §10, docs/export.md "Vision projector"), one builder each:
* `kimik25` (SigLIP2 flavour): LayerNorm ViT with biases, learned positions bicubic-resized from a
  [G, G, d] table, a 2-D RoPE whose pairs are adjacent (NORM mode) with the column first — our
  rotate-half [row | col] q/k rows are permuted per head to match —, then our post-norm as the
  projector's `mm.input_norm` (applied per patch before the 2x2 merge), `mm.1` -> GELU -> `mm.2`.
* `glm4v` (AIMv2 flavour): conv patch embed (+ a zero second conv the graph requires) + bias,
  RMS patch norm, bicubic positions, RMS/SwiGLU blocks, vision RoPE, RMS post-norm: our tower
  exactly. Its projector (2x2 conv merger -> fc -> LayerNorm -> erf GELU -> SwiGLU FFN) is made to
  compute ours, Linear(4d, 4d) -> erf GELU -> Linear(4d, d_llm), by construction:
    merger = the four patches concatenated (dy, dx, c), plus one constant channel A (bias only);
    fc     = [W1 | b1/A; -W1 | -b1/A; +1 on the constant; -1 on it] -> [h, -h, A, -A] with
             h = our first linear: mean 0 and a variance dominated by A, so LayerNorm with weight
             A*sqrt(2/n) is h * (1 + |h|²/A²)^-½;
    GELU   = ours (erf);
    FFN    = down(silu(gate) * up) with gate = 0·x + 32 (silu(32) == 32 in float32), up = the first
             4d channels, down = our second linear / 32 (a power of two: exact).
  The added matrices are F32 (the constant A would overflow F16 activations).
ggml's `conv_2d` rounds its input *and* kernel to F16 unless the kernel is BF16 (then both stay
F32). So the glm4v patch embed is split into its two convs, W = bf16(W) + bf16(W - bf16(W))
(~2^-17 relative), and the merger conv is the 0/1 selection above, in BF16 (exact). kimik25 has
one conv: its kernel is F16 whatever we write, so the pixel normalisation is folded into it and
libmtmd is told mean 0, std 1/255: its conv input is then the integer pixel value, exact in F16;
only the kernel is rounded (2^-11, the bias folded from the rounded kernel).
Arrays are numpy in GGUF order: a linear is [out, in], a conv [out, in, kh, kw]; each tensor comes
with its GGML type.
"""

from __future__ import annotations

import gguf
import jax
import numpy as np
from flax import nnx

from andesvl_jax.compress.deploy import layer_value
from andesvl_jax.data.preprocess import FLAVOUR_NORMALISATION

Q = gguf.GGMLQuantizationType

# The constant channel of the glm4v construction and the SwiGLU gate value (see the docstring).
GLM4V_CONSTANT = 2.0**16
GLM4V_GATE = 32.0
# kimik25: what libmtmd is told, so that its normalised pixel is the integer value 0..255
PIXEL_MEAN, PIXEL_STD = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)


def bf16_split(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo), both exactly representable in BF16, with hi + lo = w to ~2^-17 relative."""
    hi = gguf.quants.dequantize(gguf.quants.quantize(w, Q.BF16), Q.BF16)
    lo = gguf.quants.dequantize(gguf.quants.quantize(w - hi, Q.BF16), Q.BF16)
    return hi, lo


class VisionParams:
    """Float32 numpy views of a tower's parameters by our module path ('layers.0.attn.q.kernel')."""

    def __init__(self, module: nnx.Module):
        self.flat = dict(nnx.to_flat_state(nnx.state(module)))

    def __call__(self, dotted: str) -> np.ndarray:
        path = tuple(int(p) if p.isdigit() else p for p in dotted.split("."))
        return np.asarray(jax.device_get(layer_value(self.flat, path)), np.float32)

    def linear(self, dotted: str) -> np.ndarray:
        """Our kernel [in, out] of `dotted` ('...q') as GGUF [out, in]."""
        return np.ascontiguousarray(self(f"{dotted}.kernel").T)


def rope_pair_permutation(head_dim: int) -> np.ndarray:
    """src [head_dim]: NORM-mode dimension k takes our rotate-half dimension src[k].

    ggml's 2-D RoPE (kimik25) rotates adjacent pairs (2j, 2j+1); its first half uses the column,
    the second the row. Ours rotates (i, i + hd/2) with angle i = row for i < hd/4, column after.
    """
    q = head_dim // 4
    src = np.empty(head_dim, np.int64)
    for j in range(q):
        src[2 * j], src[2 * j + 1] = q + j, q + j + head_dim // 2  # columns first
        src[2 * q + 2 * j], src[2 * q + 2 * j + 1] = j, j + head_dim // 2  # then rows
    return src


def _permute_heads(w: np.ndarray, num_heads: int, src: np.ndarray) -> np.ndarray:
    """Rows (output features) of w [out, ...] permuted inside each head by src."""
    rows = (np.arange(num_heads)[:, None] * len(src) + src[None, :]).reshape(-1)
    return np.ascontiguousarray(w[rows])


def patch_embed_conv(p: VisionParams, cfg) -> np.ndarray:
    """Our patch linear (patch vector ordered channel, y, x) as a conv kernel [d, C, P, P]."""
    k = p.linear("patch_embed")
    return k.reshape(cfg.hidden_size, cfg.num_channels, cfg.patch_size, cfg.patch_size)


def _norm(p: VisionParams, ours: str, gguf_name: str, with_bias: bool) -> dict[str, np.ndarray]:
    out = {f"{gguf_name}.weight": p(f"{ours}.scale")}
    if with_bias:
        out[f"{gguf_name}.bias"] = p(f"{ours}.bias")
    return out


def _linear(p: VisionParams, ours: str, gguf_name: str, with_bias: bool, rows=None):
    w, b = p.linear(ours), p(f"{ours}.bias") if with_bias else None
    if rows is not None:
        w, b = rows(w), None if b is None else rows(b)
    return {f"{gguf_name}.weight": w} | ({} if b is None else {f"{gguf_name}.bias": b})


def vit_blocks(p: VisionParams, cfg, rows_qk=None) -> dict[str, np.ndarray]:
    """v.blk.N.*: norms, attention (q/k rows through rows_qk), MLP (SwiGLU or GELU)."""
    out: dict[str, np.ndarray] = {}
    bias, layer_norm = cfg.bias, cfg.norm == "layer"
    for i in range(cfg.num_layers):
        mine, blk = f"layers.{i}", f"v.blk.{i}"
        out |= _norm(p, f"{mine}.norm1", f"{blk}.ln1", layer_norm)
        out |= _norm(p, f"{mine}.norm2", f"{blk}.ln2", layer_norm)
        out |= _linear(p, f"{mine}.attn.q", f"{blk}.attn_q", bias, rows_qk)
        out |= _linear(p, f"{mine}.attn.k", f"{blk}.attn_k", bias, rows_qk)
        out |= _linear(p, f"{mine}.attn.v", f"{blk}.attn_v", bias)
        out |= _linear(p, f"{mine}.attn.o", f"{blk}.attn_out", bias)
        if cfg.mlp == "swiglu":
            for ours, theirs in (("gate", "ffn_gate"), ("up", "ffn_up"), ("down", "ffn_down")):
                out |= _linear(p, f"{mine}.mlp.{ours}", f"{blk}.{theirs}", bias)
        else:
            out |= _linear(p, f"{mine}.mlp.fc1", f"{blk}.ffn_up", True)
            out |= _linear(p, f"{mine}.mlp.fc2", f"{blk}.ffn_down", True)
    return out


def _f32(tensors: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, Q]]:
    return {name: (w, Q.F32) for name, w in tensors.items()}


def folded_patch_embed(p: VisionParams, cfg) -> tuple[np.ndarray, np.ndarray]:
    """F16 conv kernel and F32 bias taking integer pixels k = 0..255 to our patch embedding of
    (k/255 - mean) / std (kimik25: libmtmd normalises with PIXEL_MEAN, PIXEL_STD). The bias is
    folded from the F16-rounded kernel, b - sum K16 * 255 mean, so the rounding error multiplies
    the centred pixel k - 255 mean rather than k."""
    mean, std = (np.asarray(v, np.float64) for v in FLAVOUR_NORMALISATION[cfg.flavour])
    conv = patch_embed_conv(p, cfg).astype(np.float64)  # [d, C, P, P]
    kernel = (conv / (255.0 * std)[None, :, None, None]).astype(np.float16)
    bias = p("patch_embed.bias") - 255.0 * np.einsum("dcyx,c->d", kernel.astype(np.float64), mean)
    return kernel.astype(np.float32), bias.astype(np.float32)


def kimik25_tensors(model) -> dict[str, tuple[np.ndarray, Q]]:
    """The SigLIP2-flavour tower + projector as the `kimik25` graph's tensors."""
    cfg = model.cfg.vision
    p, proj = VisionParams(model.vision), VisionParams(model.projector)
    src = rope_pair_permutation(cfg.head_dim)
    g = cfg.pos_grid
    kernel, bias = folded_patch_embed(p, cfg)
    out = {
        "v.patch_embd.bias": bias,
        # [G*G, d] row-major (y, x) -> ggml [d, W, H] (the graph requires the table)
        "v.position_embd.weight": p("pos_embed").reshape(g, g, cfg.hidden_size),
    }
    out |= vit_blocks(p, cfg, rows_qk=lambda w: _permute_heads(w, cfg.num_heads, src))
    out |= _norm(p, "post_norm", "mm.input_norm", True)
    out |= _linear(proj, "mlp.fc1", "mm.1", True)
    out |= _linear(proj, "mlp.fc2", "mm.2", True)
    return {"v.patch_embd.weight": (kernel, Q.F16)} | _f32(out)


def glm4v_projector(proj: VisionParams, d_vit: int) -> dict[str, tuple[np.ndarray, Q]]:
    """Our Linear -> erf GELU -> Linear as glm4v's merger/fc/LayerNorm/GELU/SwiGLU (docstring)."""
    w1, b1 = proj.linear("mlp.fc1"), proj("mlp.fc1.bias")  # [W, 4d] over (dy, dx, c)
    w2, b2 = proj.linear("mlp.fc2"), proj("mlp.fc2.bias")  # [d_llm, W]
    width, k = w1.shape[0], 4 * d_vit
    # merger: output channel (dy*2 + dx)*d + c = input channel c of patch (dy, dx); + the constant
    merger = np.zeros((k + 1, d_vit, 2, 2), np.float32)
    for dy in range(2):
        for dx in range(2):
            at = (dy * 2 + dx) * d_vit
            merger[at + np.arange(d_vit), np.arange(d_vit), dy, dx] = 1.0
    n = 2 * width + 2
    fc = np.zeros((n, k + 1), np.float32)
    fc[:width, :k], fc[:width, k] = w1, b1 / np.float32(GLM4V_CONSTANT)
    fc[width : 2 * width] = -fc[:width]
    fc[2 * width, k], fc[2 * width + 1, k] = 1.0, -1.0
    up = np.zeros((width, n), np.float32)
    up[np.arange(width), np.arange(width)] = 1.0
    bias = np.zeros(k + 1, np.float32)
    bias[k] = GLM4V_CONSTANT
    return {
        "mm.patch_merger.weight": (merger, Q.BF16),
        "mm.patch_merger.bias": (bias, Q.F32),
        "mm.model.fc.weight": (fc, Q.F32),
        "mm.post_norm.weight": (np.full(n, GLM4V_CONSTANT * np.sqrt(2.0 / n), np.float32), Q.F32),
        "mm.up.weight": (up, Q.F32),
        "mm.gate.weight": (np.zeros((width, n), np.float32), Q.F32),
        "mm.gate.bias": (np.full(width, GLM4V_GATE, np.float32), Q.F32),
        "mm.down.weight": (w2 / np.float32(GLM4V_GATE), Q.F32),
        "mm.down.bias": (b2, Q.F32),
    }


def glm4v_tensors(model) -> dict[str, tuple[np.ndarray, Q]]:
    """The AIMv2-flavour tower (exact) + projector (constructed) as the `glm4v` graph's tensors."""
    cfg = model.cfg.vision
    p, proj = VisionParams(model.vision), VisionParams(model.projector)
    hi, lo = bf16_split(patch_embed_conv(p, cfg))
    out = {
        "v.patch_embd.bias": p("patch_embed.bias"),
        "v.norm_embd.weight": p("patch_norm.scale"),
    }
    if cfg.use_abs_pos:
        out["v.position_embd.weight"] = p("pos_embed")  # [G*G, d]
    out |= vit_blocks(p, cfg)
    out |= _norm(p, "post_norm", "v.post_ln", False)
    convs = {"v.patch_embd.weight": (hi, Q.BF16), "v.patch_embd.weight.1": (lo, Q.BF16)}
    return convs | _f32(out) | glm4v_projector(proj, cfg.hidden_size)
