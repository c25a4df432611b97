"""LSQ fake quantization (Esser et al., "Learned Step Size Quantization"), pure jnp.

    v̂ = round(clip(v / s, −Q_N, Q_P)) · s

with a straight-through estimator for `round`, so autodiff gives the LSQ step-size gradient
∂v̂/∂s = −v/s + round(v/s) inside the range and −Q_N / Q_P at the clips, and ∂v̂/∂v = 1 inside, 0
outside. The step's gradient is multiplied by g = 1/sqrt(N·Q_P) (N = elements sharing the step:
a group of weights, or the K features of an activation). Every step size is rounded to fp16 in
the forward (straight-through), so the deployed fp16 scales are exactly the ones trained with.

Written as `custom_jvp`/`custom_vjp` primitives over plain jnp: the functions work inside jit, under
`lax.scan` and `remat`, and on sharded arrays like any other elementwise op.

The quantizer returns **codes and step sizes separately** (`weight_codes`, `act_codes`): the
quantized linear multiplies codes and rescales once per group (compress/qmatmul.py), which is the
deployed integer arithmetic term for term — the reason QAT logits match the deployed model's.

Why not Qwix: it is not installable here (no network) and, as of 0.1.x, offers QAT with absmax/
min-max calibration only (no learned step sizes, no W3, no fp16-exact scale mapping). The rule
matching follows its QtRule idea (compress/rules.py); the code is ours.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

FP16_TINY = 2.0**-24  # the smallest positive fp16 (subnormal): step sizes never go below it
FP16_MAX = 65504.0


def weight_range(bits: int, zero_point: bool) -> tuple[int, int]:
    """(Q_N, Q_P) of signed weight codes; with a zero point the unsigned range is (0, 2^b − 1)."""
    if zero_point:
        return 0, (1 << bits) - 1
    return 1 << (bits - 1), (1 << (bits - 1)) - 1


def act_range(bits: int, offset: bool) -> tuple[int, int]:
    """(Q_N, Q_P) of activation codes: symmetric ±(2^(b−1) − 1), or unsigned [0, 2^b − 1] (LSQ+)."""
    if offset:
        return 0, (1 << bits) - 1
    q = (1 << (bits - 1)) - 1
    return q, q


def lsq_grad_scale(n: int, qp: int) -> float:
    """g = 1 / sqrt(N · Q_P)."""
    return 1.0 / math.sqrt(n * qp)


@jax.custom_jvp
def round_ste(x: jax.Array) -> jax.Array:
    """round (half to even), gradient 1 (straight-through)."""
    return jnp.round(x)


@round_ste.defjvp
def _round_ste_jvp(primals, tangents):
    return jnp.round(primals[0]), tangents[0]


@jax.custom_jvp
def fp16_ste(x: jax.Array) -> jax.Array:
    """x rounded to the nearest fp16 value (kept in x's dtype), gradient 1."""
    return x.astype(jnp.float16).astype(x.dtype)


@fp16_ste.defjvp
def _fp16_ste_jvp(primals, tangents):
    return fp16_ste(primals[0]), tangents[0]


@jax.custom_vjp
def scale_grad(x: jax.Array, g: float) -> jax.Array:
    """Identity forward; the gradient is multiplied by g (LSQ's step-size gradient scale)."""
    return x


def _scale_grad_fwd(x, g):
    return x, g


def _scale_grad_bwd(g, ct):
    return ct * jnp.asarray(g, ct.dtype), None


scale_grad.defvjp(_scale_grad_fwd, _scale_grad_bwd)


def step_size(s: jax.Array, g: float) -> jax.Array:
    """The step the forward uses: gradient-scaled, kept in fp16 range, rounded to fp16."""
    s = scale_grad(s.astype(jnp.float32), g)
    return fp16_ste(jnp.clip(s, FP16_TINY, FP16_MAX))


def lsq_codes(v: jax.Array, s: jax.Array, qn, qp) -> jax.Array:
    """round(clip(v / s, −Q_N, Q_P)) with a straight-through round (bounds may be arrays)."""
    return round_ste(jnp.clip(v / s, -qn, qp))


def lsq_quantize(v: jax.Array, s: jax.Array, qn: int, qp: int, g: float) -> jax.Array:
    """LSQ fake quantization v̂ = round(clip(v/s, −Q_N, Q_P)) · s with the step's gradient scaled by g."""
    s = step_size(s, g)
    return lsq_codes(v.astype(jnp.float32), s, qn, qp) * s


def group_view(w: jax.Array, group: int | None) -> jax.Array:
    """w [..., K, N] -> [..., G, group, N] (group None: one group of all K rows)."""
    k, n = w.shape[-2:]
    group = k if group is None else group
    return w.reshape(*w.shape[:-2], k // group, group, n)


def weight_codes(
    w: jax.Array,
    scale: jax.Array,
    zero: jax.Array | None,
    bits: int,
    group: int | None,
) -> tuple[jax.Array, jax.Array]:
    """Signed codes c [G, group, N] and fp16-exact steps s [G, N] with ŵ = c · s per group.

    w: [K, N] float; scale: [G, N] learned steps; zero: [G, N] learned zero points (float, rounded
    straight-through to integers in [0, 2^b − 1]) or None for symmetric. Symmetric codes lie in
    [−2^(b−1), 2^(b−1) − 1]; with a zero point z, in [−z, 2^b − 1 − z] (stored code = c + z).
    """
    wg = group_view(w.astype(jnp.float32), group)
    qn, qp = weight_range(bits, zero is not None)
    g = lsq_grad_scale(wg.shape[-2], qp)
    s = step_size(scale, g)
    if zero is None:
        return lsq_codes(wg, s[..., None, :], qn, qp), s
    z = jnp.clip(round_ste(scale_grad(zero.astype(jnp.float32), g)), 0, qp)[..., None, :]
    return lsq_codes(wg, s[..., None, :], z, qp - z), s


def dequantize_codes(codes: jax.Array, s: jax.Array) -> jax.Array:
    """codes [..., G, group, N] · s [..., G, N] -> ŵ [..., G·group, N]."""
    w = codes * s[..., None, :]
    return w.reshape(*w.shape[:-3], -1, w.shape[-1])


def dynamic_scale(x: jax.Array, qp: int) -> jax.Array:
    """Per-token step absmax / Q_P (1 for an all-zero token): x [M, K] -> [M] (no gradient).

    The same formula as `kernels.quant_matmul.quantize_activations` for A8.
    """
    amax = jnp.max(jnp.abs(jax.lax.stop_gradient(x.astype(jnp.float32))), axis=-1)
    return jnp.where(amax == 0, 1.0, amax / qp)


def act_codes(
    x: jax.Array,
    scale: jax.Array | None,
    offset: jax.Array | None,
    bits: int,
) -> tuple[jax.Array, jax.Array]:
    """Activation codes c [M, K] and step(s) with x̂ = c · s; `scale` None = dynamic per token.

    Static: s is the learned per-tensor step (fp16-exact, gradient scale 1/sqrt(K·Q_P)).
    Offset (LSQ+): the learned offset β is kept at a whole number of steps m = round(β/s), and
    x̂ = (u + m) · s with unsigned codes u = round(clip(x/s − m, 0, 2^b − 1)); the returned codes
    are u + m (integers), so the matmul is the same as for symmetric codes. x: [M, K].
    Returns (codes [M, K], s: [] static or [M] dynamic).
    """
    x = x.astype(jnp.float32)
    qn, qp = act_range(bits, offset is not None)
    if scale is None:
        s = dynamic_scale(x, qp)
        return lsq_codes(x, s[:, None], qn, qp), s
    g = lsq_grad_scale(x.shape[-1], qp)
    s = step_size(scale, g)
    if offset is None:
        return lsq_codes(x, s, qn, qp), s
    m = round_ste(scale_grad(offset.astype(jnp.float32), g) / s)
    return lsq_codes(x - m * s, s, qn, qp) + m, s


# ---- step-size initialisation (values, not traced through) ----

ACT_INITS = ("absmax", "mse", "lsq")


def absmax_weight_init(w, bits: int, group: int | None, zero_point: bool):
    """Steps (and zero points) from each group's range: w [..., K, N] -> (s [..., G, N], z | None)."""
    wg = group_view(jnp.asarray(w, jnp.float32), group)
    qn, qp = weight_range(bits, zero_point)
    if not zero_point:
        s = jnp.max(jnp.abs(wg), axis=-2) / max(qp, 1)
        return fp16_ste(jnp.clip(s, FP16_TINY, FP16_MAX)), None
    lo = jnp.minimum(wg.min(-2), 0.0)
    hi = jnp.maximum(wg.max(-2), 0.0)
    s = fp16_ste(jnp.clip((hi - lo) / qp, FP16_TINY, FP16_MAX))
    return s, jnp.clip(jnp.round(-lo / s), 0, qp)


def mse_weight_init(w, bits: int, group: int | None, zero_point: bool, grid: int = 40):
    """Per-group steps minimising ||w − ŵ||² over clip ratios 1, 0.99, ... (absmax · ratio)."""
    wg = group_view(jnp.asarray(w, jnp.float32), group)
    s0, z0 = absmax_weight_init(w, bits, group, zero_point)
    qn, qp = weight_range(bits, zero_point)
    best_s, best_z = s0, z0
    best_err = jnp.full(s0.shape, jnp.inf)
    for ratio in jnp.linspace(1.0, 0.3, grid):
        s = fp16_ste(jnp.clip(s0 * ratio, FP16_TINY, FP16_MAX))
        if zero_point:
            lo = jnp.minimum(wg.min(-2), 0.0) * ratio
            z = jnp.clip(jnp.round(-lo / s), 0, qp)
            c = jnp.clip(jnp.round(wg / s[..., None, :]), -z[..., None, :], qp - z[..., None, :])
        else:
            z = None
            c = jnp.clip(jnp.round(wg / s[..., None, :]), -qn, qp)
        err = jnp.sum(jnp.square(c * s[..., None, :] - wg), axis=-2)
        better = err < best_err
        best_err = jnp.where(better, err, best_err)
        best_s = jnp.where(better, s, best_s)
        if zero_point:
            best_z = jnp.where(better, z, best_z)
    return best_s, best_z


def act_init(x, bits: int, offset: bool, method: str = "absmax", grid: int = 40):
    """(static step, offset or None) from calibration activations x (any shape).

    absmax: the range maps onto the codes; mse: the clip ratio minimising ||x − x̂||²; lsq:
    Esser's 2·mean|x|/sqrt(Q_P). With `offset` the range is [min, max] (LSQ+ init).
    """
    x = jnp.asarray(x, jnp.float32).reshape(-1)
    qn, qp = act_range(bits, offset)
    lo, hi = (jnp.min(x), jnp.max(x)) if offset else (-jnp.max(jnp.abs(x)), jnp.max(jnp.abs(x)))
    if method == "lsq":
        s = 2 * jnp.mean(jnp.abs(x - (lo if offset else 0.0))) / math.sqrt(qp)
        return fp16_ste(jnp.clip(s, FP16_TINY, FP16_MAX)), (lo if offset else None)
    if method not in ACT_INITS:
        raise ValueError(f"unknown activation init {method!r}; expected one of {ACT_INITS}")
    span = (hi - lo) if offset else hi
    ratios = [1.0] if method == "absmax" else jnp.linspace(1.0, 0.3, grid)
    best = None
    for ratio in ratios:
        s = fp16_ste(jnp.clip(span * ratio / qp, FP16_TINY, FP16_MAX))
        beta = lo * ratio if offset else None
        m = 0.0 if beta is None else jnp.round(beta / s)
        xh = (jnp.clip(jnp.round(x / s - m), -qn, qp) + m) * s
        err = float(jnp.mean(jnp.square(xh - x)))
        if best is None or err < best[0]:
            best = (err, s, beta)
    return best[1], best[2]
