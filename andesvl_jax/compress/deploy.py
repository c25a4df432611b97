"""QAT/PTQ model -> deployed integer model, and the integer-domain reference forward.

`deploy(model)` turns every `QuantLinear` into a `DeployedLinear`: the weight codes packed in the
`PackedWeight` format (kernels/quant_format.py, docs/formats.md §1) with the trained steps stored in
fp16 (exact: QAT already runs with fp16-rounded steps), the static activation step in fp16 and the
LSQ+ offset as an integer number of steps. Everything else (norms, embeddings, float linears, the
vision tower) is copied. The deployed model is laid out with separate layers (`scan_layers=False`),
one set of tensors per layer, which is how on-device formats store it and what `Engine` decodes.

The reference forward of a DeployedLinear is the arithmetic an NPU does: activations to int8/int16
codes with the static step (or a per-token step), integer products accumulated in int32 per group of
K rows, then one float rescale per group (per-channel weights: one per matmul) and one by the
activation step (compress/qmatmul.py — the same rescale code the QAT forward runs). Weight-only
(activations "none") linears decode the weight and multiply in the compute dtype, like
`kernels.quant_matmul.quantized_matmul_ref`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from andesvl_jax.compress.lsq import FP16_MAX, FP16_TINY, act_range, dynamic_scale
from andesvl_jax.compress.qlinear import QuantEmbed, QuantLinear, quant_sites, replace_module
from andesvl_jax.compress.qmatmul import grouped_product
from andesvl_jax.compress.rules import layer_names, weight_sites
from andesvl_jax.kernels import dispatch
from andesvl_jax.kernels._common import round_up
from andesvl_jax.kernels.packing import plane_widths
from andesvl_jax.kernels.quant_format import (
    PackedWeight,
    dequantize_weight,
    pack_weight,
    unpack_weight_codes,
)

PACK_GROUPS = (128, 64, 32)
REFERENCE = "reference"  # DeployedLinear.impl: the integer reference forward (not a kernel)


class Deployed(nnx.Variable):
    """A deployed array (packed codes, fp16 steps, integer offsets): not a trainable parameter."""


@dataclasses.dataclass(frozen=True)
class DeployMeta:
    """What a deployed linear is (static; saved as JSON beside the tensors).

    group: the quantization group along K (None = per output channel); pack_group: the
    PackedWeight group (= group, or for per-channel weights the largest of 128/64/32 dividing
    K, with the channel's step repeated per pack group). act_bits: None (float activations), 8, 16.
    """

    bits: int
    group: int | None
    pack_group: int
    in_features: int
    out_features: int
    zero_point: bool
    act_bits: int | None
    act_dynamic: bool
    act_offset: bool
    bias: bool
    embedding: bool = False  # a token embedding table (DeployedEmbed): [D, vocab] kernel

    @classmethod
    def of(cls, qlin: QuantLinear) -> DeployMeta:
        rule = qlin.rule
        k, n = qlin.kernel.shape[-2:]
        if qlin.out_in:
            k, n = n, k
        if rule.group_size is None:
            pack = next((g for g in PACK_GROUPS if k % g == 0), 32)
        else:
            pack = rule.group_size
        return cls(
            bits=rule.weight_bits,
            group=rule.group_size,
            pack_group=pack,
            in_features=k,
            out_features=n,
            zero_point=rule.zero_point,
            act_bits=rule.act_bits,
            act_dynamic=rule.act != "none" and rule.act_scale == "dynamic",
            act_offset=rule.act_offset,
            bias=qlin.bias is not None,
            embedding=isinstance(qlin, QuantEmbed),
        )

    def shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Tensor name -> (shape, dtype) of this linear's deployed arrays."""
        kp, n = round_up(self.in_features, self.pack_group), self.out_features
        out = {
            f"plane{i}": ((kp * w // 32, n), np.dtype(np.uint32))
            for i, w in enumerate(plane_widths(self.bits))
        }
        out["scales"] = ((kp // self.pack_group, n), np.dtype(np.float16))
        if self.zero_point:
            out["zeros"] = ((kp // self.pack_group, n), np.dtype(np.uint8))
        if self.act_bits is not None and not self.act_dynamic:
            out["act_scale"] = ((), np.dtype(np.float16))
        if self.act_offset:
            out["act_offset"] = ((), np.dtype(np.int32))
        return out


class DeployedLinear(nnx.Module):
    """The integer reference of a quantized linear: x [..., K] -> [..., N] (see module docstring)."""

    def __init__(
        self, meta: DeployMeta, arrays: dict | None = None, bias=None, *, dtype=jnp.float32, lead=()
    ):
        shapes = meta.shapes().items()
        arrays = arrays or {k: jnp.zeros((*lead, *s), d) for k, (s, d) in shapes}
        for key in meta.shapes():
            setattr(self, key, Deployed(jnp.asarray(arrays[key])))
        for key in ("plane1", "zeros", "act_scale", "act_offset"):
            if key not in meta.shapes():
                setattr(self, key, None)
        self.bias = bias
        self.meta, self.dtype = meta, dtype
        self.impl = (
            REFERENCE  # or a kernels.dispatch impl ("auto", "xla", "pallas"): set_kernel_impl
        )

    def weight(self) -> PackedWeight:
        meta = self.meta
        planes = tuple(getattr(self, f"plane{i}")[...] for i in range(len(plane_widths(meta.bits))))
        zeros = None if self.zeros is None else self.zeros[...]
        return PackedWeight(
            planes, self.scales[...], zeros, meta.bits, meta.pack_group, meta.in_features
        )

    def signed_codes(self) -> jax.Array:
        """Integer weight codes c = q − z, int32 [K, N]."""
        pw = self.weight()
        codes = unpack_weight_codes(pw)
        if pw.zeros is None:
            z = 1 << (pw.bits - 1)
        else:
            z = jnp.repeat(pw.zeros.astype(jnp.int32), pw.group_size, axis=0)
        return (codes - z)[: pw.in_features]

    def act_codes(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Integer activation codes [M, K] (int8/int16; int32 with an offset) and the step(s)."""
        meta = self.meta
        x = x.astype(jnp.float32)
        qn, qp = act_range(meta.act_bits, meta.act_offset)
        if meta.act_dynamic:
            s = dynamic_scale(x, qp)
            codes = jnp.round(jnp.clip(x / s[:, None], -qn, qp))
            return codes.astype(jnp.int8 if meta.act_bits == 8 else jnp.int16), s
        s = self.act_scale[...].astype(jnp.float32)
        if self.act_offset is None:
            codes = jnp.round(jnp.clip(x / s, -qn, qp))
            return codes.astype(jnp.int8 if meta.act_bits == 8 else jnp.int16), s
        m = self.act_offset[...].astype(jnp.float32)
        u = jnp.round(jnp.clip((x - m * s) / s, 0, qp)).astype(jnp.int32)
        return u + self.act_offset[...].astype(jnp.int32), s

    def through_kernels(self, x2: jax.Array) -> jax.Array:
        """The same quantized operands through the kernel dispatch (`self.impl`): weight-only and
        A16 (its int16 codes times their step, exact in float32) by `quantized_matmul`, A8 without
        offset by the A8 kernel. Equal to the reference up to float accumulation order."""
        meta, w = self.meta, self.weight()
        if meta.act_bits is None:
            return dispatch.quantized_matmul(x2.astype(self.dtype), w, impl=self.impl)
        xc, s_x = self.act_codes(x2)
        s_rows = jnp.broadcast_to(s_x, (x2.shape[0],)).astype(jnp.float32)
        if meta.act_bits == 8 and self.act_offset is None:
            return dispatch.quantized_matmul_a8(
                xc, s_rows, w, impl=self.impl, compute_dtype=jnp.float32, out_dtype=jnp.float32
            )
        x_hat = xc.astype(jnp.float32) * s_rows[:, None]
        return dispatch.quantized_matmul(x_hat, w, impl=self.impl)

    def __call__(self, x: jax.Array) -> jax.Array:
        meta = self.meta
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        if self.impl != REFERENCE:
            y = self.through_kernels(x2)
        elif meta.act_bits is None:
            w = dequantize_weight(self.weight()).astype(self.dtype)
            y = jnp.matmul(x2.astype(self.dtype), w, preferred_element_type=jnp.float32)
        else:
            k, n = meta.in_features, meta.out_features
            group = k if meta.group is None else meta.group
            wc = self.signed_codes().reshape(k // group, group, n)
            s_w = self.scales[...].astype(jnp.float32)
            s_w = s_w[:1] if meta.group is None else s_w[: k // group]
            xc, s_x = self.act_codes(x2)
            y = grouped_product(xc, wc, s_w, s_x, "int")
        y = y.astype(self.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y.reshape(*lead, -1)


class DeployedEmbed(DeployedLinear):
    """A deployed token embedding table: the packed [D, vocab] kernel of the tied head. The lookup
    unpacks the columns of the requested tokens; `attend` is the deployed (weight-only) product."""

    def __call__(self, ids: jax.Array) -> jax.Array:
        table_t = dequantize_weight(self.weight())[: self.meta.in_features]  # [D, vocab] float32
        rows = jnp.take(table_t, ids, axis=1)  # [D, *ids.shape]
        return jnp.moveaxis(rows, 0, -1).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        return DeployedLinear.__call__(self, x)


def deployed_arrays(qlin: QuantLinear, meta: DeployMeta) -> list[dict[str, np.ndarray]]:
    """The deployed tensors of each layer of `qlin` (one dict unless stacked)."""
    wc, sw = qlin.quantized_weight()  # [.., G, group, N], [.., G, N]
    wc, sw = np.asarray(wc), np.asarray(sw, np.float32)
    if not np.array_equal(sw.astype(np.float16).astype(np.float32), sw):
        raise AssertionError(f"{qlin.names[0]}: steps are not fp16-exact")
    bits, k, n = meta.bits, meta.in_features, meta.out_features
    if meta.zero_point:
        z = np.clip(np.round(np.asarray(qlin.w_zero[...], np.float32)), 0, (1 << bits) - 1)
    else:
        z = np.full(sw.shape, 1 << (bits - 1), np.float32)
    stored = (wc + z[..., None, :]).reshape(*wc.shape[:-3], k, n)  # codes in [0, 2^b)
    reps = 1 if meta.group is not None else round_up(k, meta.pack_group) // meta.pack_group
    scales, zeros = np.repeat(sw, reps, axis=-2), np.repeat(z, reps, axis=-2)
    kp = round_up(k, meta.pack_group)
    rows = [None] if wc.ndim == 3 else list(range(wc.shape[0]))
    out = []
    for row in rows:
        pick = (lambda a: a) if row is None else (lambda a, r=row: a[r])  # noqa: E731
        zr = pick(zeros)
        codes = np.concatenate([pick(stored), np.repeat(zr[-1:], kp - k, axis=0)], axis=0)
        pw = pack_weight(
            jnp.asarray(codes.astype(np.uint32)),
            jnp.asarray(pick(scales).astype(np.float16)),
            jnp.asarray(zr.astype(np.uint8)) if meta.zero_point else None,
            bits,
            meta.pack_group,
            k,
        )
        arrays = {f"plane{i}": np.asarray(p) for i, p in enumerate(pw.planes)}
        arrays["scales"] = np.asarray(pw.scales)
        if meta.zero_point:
            arrays["zeros"] = np.asarray(pw.zeros)
        if "act_scale" in meta.shapes():
            s = np.clip(np.asarray(pick(qlin.a_scale[...]), np.float32), FP16_TINY, FP16_MAX)
            arrays["act_scale"] = s.astype(np.float16)
            if meta.act_offset:
                beta = np.asarray(pick(qlin.a_offset[...]), np.float32)
                s32 = arrays["act_scale"].astype(np.float32)
                arrays["act_offset"] = np.round(beta / s32).astype(np.int32)
        out.append(arrays)
    return out


def skeleton(model: nnx.Module, metas: dict[str, DeployMeta]) -> nnx.Module:
    """`model` with the linears named in `metas` (by first per-layer name) replaced by zero
    DeployedLinears (stacked layers get stacked arrays)."""
    for site in list(weight_sites(model)):
        name = site.names[0]
        if name in metas:
            lead = (len(site.names),) if site.stacked else ()
            make = DeployedEmbed if metas[name].embedding else DeployedLinear
            new = make(
                metas[name], None, getattr(site.module, "bias", None), dtype=site.module.dtype,
                lead=lead,
            )  # fmt: skip
            replace_module(model, site.path, new)
    return model


def deployed_linears(model: nnx.Module):
    """(path, per-layer names, DeployedLinear) of every deployed linear of `model`."""
    for path, module in nnx.iter_modules(model):
        if isinstance(module, DeployedLinear):
            lead = module.plane0.shape[:-2]
            yield tuple(path), layer_names(path, lead[0] if lead else None), module


def deployed_metas(model: nnx.Module) -> dict[str, DeployMeta]:
    """Per-layer name -> DeployMeta of every deployed linear."""
    return {n: m.meta for _, names, m in deployed_linears(model) for n in names}


def layer_value(flat: dict, path: tuple):
    """The value at `path` in a state of either layout: a '.../layers/i/...' path not in `flat` is
    row i of the stacked '.../layers/...' entry."""
    if path in flat:
        return flat[path].get_value()
    for at, p in enumerate(path):
        if p == "layers" and at + 1 < len(path) and isinstance(path[at + 1], int):
            stacked = path[: at + 1] + path[at + 2 :]
            if stacked in flat:
                return flat[stacked].get_value()[path[at + 1]]
    raise KeyError(f"no value for {'/'.join(map(str, path))}")


def deploy(model: nnx.Module, separate_layers: bool | None = None) -> nnx.Module:
    """The deployed integer model of a QAT/PTQ `AndesVL` (the input is left untouched).

    separate_layers: None keeps the model's layout — needed for a bit-exact comparison with the QAT
    forward, since float ops inside a `scan` round differently (~1e-7) from separate layers, and
    activation codes then flip at rounding ties; True gives one module per layer (what `Engine`
    decodes and `save_deployed` writes).
    """
    sites = quant_sites(model)
    if not sites:
        raise ValueError("the model has no QuantLinear: call quantize_model (and QAT or PTQ) first")
    if any(s.module.observing for s in sites):
        raise ValueError("a QuantLinear is still observing (calibration did not finish)")
    metas, arrays = {}, {}
    for site in sites:
        meta = DeployMeta.of(site.module)
        for name, a in zip(site.names, deployed_arrays(site.module, meta), strict=True):
            metas[name], arrays[name] = meta, a
    scan = model.cfg.scan_layers if separate_layers is None else not separate_layers
    cfg = model.cfg.replace(scan_layers=scan)
    target = nnx.eval_shape(lambda: skeleton(type(model)(cfg, rngs=nnx.Rngs(0)), metas))
    deployed = {path: names for path, names, _ in deployed_linears(target)}
    graphdef, abstract = nnx.split(target)
    flat_src = dict(nnx.to_flat_state(nnx.state(model)))
    filled = []
    for path, var in nnx.to_flat_state(abstract):
        names = deployed.get(tuple(path[:-1]))
        if names is not None and path[-1] in arrays[names[0]]:
            rows = [arrays[n][path[-1]] for n in names]
            value = rows[0] if var.shape == rows[0].shape else np.stack(rows)
        else:
            value = layer_value(flat_src, path)
        filled.append((path, var.replace(jnp.asarray(value))))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


__all__ = [
    "DeployMeta",
    "Deployed",
    "DeployedEmbed",
    "DeployedLinear",
    "deploy",
    "deployed_linears",
    "deployed_metas",
    "layer_value",
    "skeleton",
]


def set_kernel_impl(model: nnx.Module, impl: str) -> nnx.Module:
    """Run every DeployedLinear of `model` by `impl` (in place; returns `model`): "reference" (the
    integer-domain specification, the default) or a kernels.dispatch impl name ("auto" picks the
    validated kernel of this backend: XLA on CPU, Pallas where validated)."""
    if impl != REFERENCE:
        dispatch.resolve_impl(impl, "quantized_matmul")  # an unknown name fails here, named
    for _, module in nnx.iter_modules(model):
        if isinstance(module, DeployedLinear):
            module.impl = impl
    return model
