"""Logical-axis sharding: mesh from config, rules table, parameter and activation shardings.

Parameters carry `logical_axes` metadata (models/layers.py). A rules table maps each logical name to
a mesh axis (or a tuple of them, or None = replicated). Changing the parallelism is a config edit:
the same code runs on a 1x1x1 mesh or a pod.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
LogicalRules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Default rules (MaxText-style): weights are FSDP-sharded on their embed dims and tensor-parallel
# on heads/mlp/vocab; activations shard their batch over data x fsdp.
DEFAULT_RULES: LogicalRules = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("vit_embed", "fsdp"),
    ("vit_heads", "tensor"),
    ("vit_mlp", "tensor"),
    ("patch", None),
    ("proj_in", "fsdp"),
    ("proj_hidden", "tensor"),
    ("layers", None),
    ("pos_table", None),
)


def make_mesh(shape: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh; one entry may be -1 (= the remaining devices).

    `dcn_data` > 1 makes the mesh multi-slice: the devices form that many slices (TPU slices, or
    hosts where devices have no slice index), `data` is split across them (its outer factor goes over
    the slow data-centre network) and fsdp/tensor stay inside a slice (the fast interconnect).
    """
    devices = list(jax.devices() if devices is None else devices)
    unknown = [k for k in shape if k not in (*MESH_AXES, "dcn_data")]
    if unknown:
        raise ValueError(
            f"unknown mesh axes {unknown}; expected a subset of {MESH_AXES} (+ dcn_data)"
        )
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(
            f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes, strict=True))}"
        )
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(
                f"{len(devices)} devices do not divide into the fixed mesh axes (product {known})"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes, strict=True))} needs {math.prod(sizes)} devices, "
            f"{len(devices)} available"
        )
    return Mesh(device_grid(devices, sizes, int(shape.get("dcn_data", 1))), MESH_AXES)


def device_slice(device) -> int:
    """The slice a device belongs to: a TPU's slice, else its host (CPU/GPU devices report
    slice_index 0 whatever the host)."""
    return device.slice_index if device.platform == "tpu" else device.process_index


def device_grid(devices: Sequence, sizes: Sequence[int], slices: int = 1) -> np.ndarray:
    """Devices as a [data, fsdp, tensor] array (`jax.experimental.mesh_utils`): in the physical
    topology's order on TPU, and with `slices` > 1 a hybrid mesh whose `data` axis is slices x
    data-within-a-slice, so that only the data axis crosses slices (our slice: `device_slice`)."""
    # Every process must build the same mesh whatever order its caller listed the devices in.
    devices = sorted(devices, key=lambda d: d.id)
    if slices == 1:
        try:
            return mesh_utils.create_device_mesh(sizes, devices)
        except AssertionError:  # TPU devices that are not a whole cuboid (a subset of a slice)
            return np.asarray(devices, dtype=object).reshape(sizes)
    found = len({device_slice(d) for d in devices})
    if found != slices:
        raise ValueError(f"mesh.dcn_data={slices} but the devices form {found} slice(s)")
    if sizes[0] % slices:
        raise ValueError(f"mesh data={sizes[0]} does not split over dcn_data={slices} slices")
    per_slice = [sizes[0] // slices, *sizes[1:]]
    try:
        return mesh_utils.create_hybrid_device_mesh(
            per_slice,
            [slices, 1, 1],
            devices,
            process_is_granule=devices[0].platform != "tpu",
        )
    except ValueError as e:
        raise ValueError(
            f"a {per_slice} (data, fsdp, tensor) block per slice x dcn_data={slices}: {e}"
        ) from e


def logical_to_spec(axes: Sequence[str | None], rules: LogicalRules) -> PartitionSpec:
    """Map logical names to a PartitionSpec; a mesh axis is used at most once per array."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name in axes:
        target = table.get(name) if name is not None else None
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        targets = tuple(t for t in targets if t not in used)
        used.update(targets)
        out.append(targets[0] if len(targets) == 1 else (targets or None))
    return PartitionSpec(*out)


def _fits(shape: Sequence[int], spec: PartitionSpec, mesh: Mesh) -> PartitionSpec:
    """Drop mesh axes that do not divide their dimension (e.g. 2 KV heads on tensor=4)."""
    fixed = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=False):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        size = math.prod(mesh.shape[n] for n in names)
        fixed.append(entry if names and dim % size == 0 else None)
    return PartitionSpec(*fixed)


def state_shardings(state: nnx.State, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES):
    """NamedShardings for every leaf of an (abstract) nnx.State, from its `logical_axes` metadata."""

    def one(var):
        shape = var.get_value().shape
        axes = var.get_metadata().get("logical_axes") or (None,) * len(shape)
        if len(axes) != len(shape):
            raise ValueError(f"logical axes {axes} do not match parameter shape {shape}")
        return NamedSharding(mesh, _fits(shape, logical_to_spec(axes, rules), mesh))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


_CONTEXT: contextvars.ContextVar[tuple[Mesh, LogicalRules] | None] = contextvars.ContextVar(
    "andesvl_sharding", default=None
)


@contextlib.contextmanager
def use_mesh_rules(mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> Iterator[None]:
    """Within this context, `constrain` places activations by logical name on `mesh`."""
    token = _CONTEXT.set((mesh, rules))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """with_sharding_constraint by logical names; a no-op outside `use_mesh_rules`."""
    ctx = _CONTEXT.get()
    if ctx is None:
        return x
    mesh, rules = ctx
    spec = _fits(x.shape, logical_to_spec(axes, rules), mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
