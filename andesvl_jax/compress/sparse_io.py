"""Pruned + quantized models as one safetensors file (layout: docs/formats.md §6).

Every pruned linear (a `SparseLinear`, compress/prune.py) is stored by `sparse_codec.encode` as
`<name>.mask`, `<name>.values`, `<name>.scales` (and `<name>.counts` if unstructured), `<name>` being
its per-layer path joined by '.' (`llm.layers.0.mlp.up`); everything else (embeddings, norms, the
vision tower, the projector, biases, unpruned linears) is stored as it is, one tensor per layer. The
metadata holds the model config and per pruned linear its pattern, shape, bits, group, kept count and
a CRC-32 of every field: a corrupt file is rejected on load naming the tensor.

Loading gives either the dense-equivalent model (each pruned kernel decoded to code · step: the very
weights the fake-quantized model ran with) or the packed model, whose 1:4 linears hold a
`kernels.sparse_format.SparseWeight` and multiply through `kernels.dispatch.quantized_matmul`
(impl='auto': the Pallas kernel where validated, the XLA reference on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import zlib

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from andesvl_jax.compress.deploy import layer_value
from andesvl_jax.compress.prune import sparse_sites
from andesvl_jax.compress.qlinear import replace_module
from andesvl_jax.compress.rules import linear_sites
from andesvl_jax.compress.sparse_codec import (
    CodecError,
    PackedSparse,
    bpw_floor,
    decode,
    dense_weight,
    encode,
)
from andesvl_jax.config import AndesVLConfig, replace_fields
from andesvl_jax.convert.safetensors_io import (
    CheckpointError,
    file_format,
    require_finite,
    write_safetensors,
)
from andesvl_jax.kernels import dispatch
from andesvl_jax.kernels.sparse_format import (
    SPARSE_GROUP_SIZES,
    VALUE_ZERO,
    SparseWeight,
    pack_sparse,
)
from andesvl_jax.models.andesvl import AndesVL

FORMAT = "andesvl-sparse"
VERSION = "1"
FIELDS = ("counts", "mask", "values", "scales")


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def packed_linears(model: nnx.Module, target_bpw: float | None = None) -> dict[str, PackedSparse]:
    """Per-layer name -> the stored form of every pruned linear of `model` (stored == trained: the
    codes are those of the LSQ fake quantizer on the masked kernel). target_bpw: a pattern whose
    floor is above it is an error naming the tensor."""
    out = {}
    for site in sparse_sites(model):
        mod = site.module
        if mod.rule.zero_point:
            raise ValueError(f"{site.names[0]}: the sparse format stores symmetric codes only")
        wc, sw = mod.quantized_weight()  # [.., G, group, N], [.., G, N]
        wc = np.asarray(wc).reshape(*wc.shape[:-3], -1, wc.shape[-1])
        sw, mask = np.asarray(sw), np.asarray(mod.mask[...]) > 0
        for i, name in enumerate(site.names):
            pick = (lambda a, i=i: a[i]) if site.stacked else (lambda a: a)  # noqa: E731
            m = pick(mask)
            k, n = m.shape
            pattern = _pattern_of(m)
            bits = mod.rule.weight_bits
            if target_bpw is not None:
                floor = bpw_floor(pattern, bits, mod.rule.group_size, 1 - m.mean())
                if floor > target_bpw:
                    raise ValueError(
                        f"{name}: {pattern} at {bits} bits, group {mod.rule.group_size} stores at "
                        f"least {floor:.3f} bits per weight, above the requested {target_bpw}"
                    )
            codes = np.round(pick(wc)).astype(np.int64) * m
            out[name] = encode(codes, pick(sw), m, pattern, bits, name)
    return out


def _pattern_of(mask: np.ndarray) -> str | float:
    """The N:M pattern a mask obeys (checked 1:4, 2:8, 2:4 in order), else 'unstructured' as its
    fraction."""
    k, n = mask.shape
    for n_keep, m in ((1, 4), (2, 8), (2, 4)):
        if k % m == 0 and np.all(mask.reshape(k // m, m, n).sum(1) == n_keep):
            return f"{n_keep}:{m}"
    return float(1 - mask.mean())


def save_sparse(
    model: nnx.Module, path: str | pathlib.Path, target_bpw: float | None = None
) -> pathlib.Path:
    """Write a pruned model (either layer layout) to `path` (a .safetensors file)."""
    packed = packed_linears(model, target_bpw)
    if not packed:
        raise ValueError(
            "not a pruned model (no SparseLinear): run compress.prune.prune_model first"
        )
    cfg = model.cfg.replace(scan_layers=False)
    flat = dict(nnx.to_flat_state(nnx.state(model)))
    target = nnx.eval_shape(lambda: AndesVL(cfg, rngs=nnx.Rngs(0)))
    tensors = {}
    for p, _ in nnx.to_flat_state(nnx.state(target)):
        name = "/".join(str(x) for x in p[:-1])
        if name in packed and p[-1] == "kernel":
            for field, arr in packed[name].fields.items():
                tensors[f"{_key(p[:-1])}.{field}"] = arr
        else:
            tensors[_key(p)] = np.asarray(layer_value(flat, tuple(p)))
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
        "linears": json.dumps({n: pk.meta() for n, pk in packed.items()}, sort_keys=True),
    }
    path = pathlib.Path(path)
    write_safetensors(path, tensors, metadata)
    return path


@dataclasses.dataclass
class SparseFile:
    """What a sparse checkpoint holds: config, packed linears, dense tensors (by '.' key)."""

    cfg: AndesVLConfig
    packed: dict[str, PackedSparse]
    dense: dict[str, np.ndarray]


def read_sparse(path: str | pathlib.Path) -> SparseFile:
    """Read and verify a `save_sparse` file (CRC, shapes, decodability): CheckpointError naming the
    tensor on anything wrong."""
    path = pathlib.Path(path)
    try:
        f = safe_open(path, framework="np")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    meta = f.metadata() or {}
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: not a sparse AndesVL checkpoint (format={meta.get('format')!r} "
            f"version={meta.get('version')!r}; expected {FORMAT!r} {VERSION})"
        )
    try:
        cfg = replace_fields(AndesVLConfig(), json.loads(meta["config"])).validate()
        linears = json.loads(meta["linears"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable config/linears metadata: {e}") from e
    keys = set(f.keys())
    packed = {}
    for name, m in linears.items():
        base = name.replace("/", ".")
        fields = {}
        for field, crc in m["crc32"].items():
            key = f"{base}.{field}"
            if key not in keys:
                raise CheckpointError(f"{path}: tensor {key} is missing")
            arr = f.get_tensor(key)
            keys.discard(key)
            if zlib.crc32(np.ascontiguousarray(arr).tobytes()) != crc:
                raise CheckpointError(f"{path}: tensor {key} is corrupt (CRC-32 mismatch)")
            fields[field] = arr
        pk = PackedSparse(m["pattern"], tuple(m["shape"]), m["bits"], m["group"], m["kept"], fields)
        try:
            decode(pk, base)
        except (CodecError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from e
        packed[name] = pk
    dense = {}
    for key in sorted(keys):
        arr = f.get_tensor(key)
        if arr.dtype.kind == "f":
            require_finite(arr, str(path), key)
        dense[key] = arr
    return SparseFile(cfg, packed, dense)


def dense_equivalent(sf: SparseFile, where: str = "") -> nnx.Module:
    """The AndesVL (separate layers) with every pruned kernel decoded to code · step."""
    target = nnx.eval_shape(lambda: AndesVL(sf.cfg, rngs=nnx.Rngs(0)))
    graphdef, abstract = nnx.split(target)
    filled = []
    for p, var in nnx.to_flat_state(abstract):
        name = "/".join(str(x) for x in p[:-1])
        if name in sf.packed and p[-1] == "kernel":
            value = dense_weight(sf.packed[name], name)
        else:
            key = _key(p)
            if key not in sf.dense:
                raise CheckpointError(f"{where}: tensor {key} is missing")
            value = sf.dense[key]
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointError(
                f"{where}: tensor {_key(p)} has shape {value.shape}, expected {tuple(var.shape)}"
            )
        filled.append((p, var.replace(jnp.asarray(value, var.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


class PackedArray(nnx.Variable):
    """A packed sparse-weight array (not trainable)."""


class PackedSparseLinear(nnx.Module):
    """x [..., K] @ a 1:4-sparse 4-bit `SparseWeight` through the kernel dispatch (+ bias)."""

    def __init__(self, pk: PackedSparse, name: str, bias=None, *, dtype=jnp.float32):
        codes, steps, mask = decode(pk, name)
        k, n = pk.shape
        if pk.pattern != "1:4" or pk.group not in SPARSE_GROUP_SIZES:
            raise ValueError(
                f"{name}: the sparse kernel runs 1:4 with groups {SPARSE_GROUP_SIZES}, not "
                f"{pk.pattern} group {pk.group}"
            )
        index = np.argmax(mask.reshape(k // 4, 4, n), axis=1)
        value = np.take_along_axis(codes.reshape(k // 4, 4, n), index[:, None, :], 1)[:, 0]
        sw = pack_sparse(
            jnp.asarray(index.astype(np.uint32)),
            jnp.asarray((value + VALUE_ZERO).astype(np.uint32)),
            jnp.asarray(steps),
            pk.group,
            k,
        )
        self.index, self.values = PackedArray(sw.index), PackedArray(sw.values)
        self.scales = PackedArray(sw.scales)
        self.group_size, self.in_features = pk.group, k
        self.bias, self.dtype = bias, dtype

    def __call__(self, x):
        sw = SparseWeight(
            self.index[...], self.values[...], self.scales[...], self.group_size, self.in_features
        )
        y = dispatch.quantized_matmul(x.astype(self.dtype), sw, impl="auto")
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


def packed_model(sf: SparseFile) -> nnx.Module:
    """The dense-equivalent model with every 1:4 linear replaced by a `PackedSparseLinear` (other
    patterns stay decoded: the kernel runs 1:4 only)."""
    model = dense_equivalent(sf)
    for site in list(linear_sites(model)):
        name = site.names[0]
        pk = sf.packed.get(name)
        if pk is not None and pk.pattern == "1:4" and pk.group in SPARSE_GROUP_SIZES:
            new = PackedSparseLinear(pk, name, site.module.bias, dtype=site.module.dtype)
            replace_module(model, site.path, new)
    return model


def is_sparse_file(path: str | pathlib.Path) -> bool:
    """Whether `path` is a safetensors file written by `save_sparse`."""
    return file_format(path) == FORMAT


def load_sparse(path: str | pathlib.Path, packed: bool = True) -> nnx.Module:
    """A model from a `save_sparse` file: packed (1:4 linears on the sparse kernel) or decoded."""
    sf = read_sparse(path)
    return packed_model(sf) if packed else dense_equivalent(sf, str(path))


__all__ = [
    "PackedSparseLinear",
    "SparseFile",
    "dense_equivalent",
    "is_sparse_file",
    "load_sparse",
    "packed_linears",
    "packed_model",
    "read_sparse",
    "save_sparse",
]
