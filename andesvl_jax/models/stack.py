"""A stack of identical layers: a Python list, or one set of stacked weights run with scan.

With `scan=True` each parameter gets a leading 'layers' axis and the stack compiles once, whatever
the depth (the standard for large models); with `scan=False` layers are separate modules (handy for
per-layer surgery). Rematerialisation wraps the per-layer body in both cases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def make_layers(
    make_layer: Callable[[nnx.Rngs], nnx.Module], num_layers: int, rngs: nnx.Rngs, scan: bool
):
    """Build `num_layers` layers; stacked along a leading 'layers' axis when `scan`."""
    if not scan:
        return nnx.List([make_layer(rngs) for _ in range(num_layers)])

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(r):
        return make_layer(r)

    layers = make(rngs)
    for _, var in nnx.iter_graph(layers):
        if isinstance(var, nnx.Variable) and var.has_metadata("logical_axes"):
            var.set_metadata("logical_axes", ("layers", *var.get_metadata()["logical_axes"]))
    return layers


def run_layers(layers, body: Callable, carry: Any, per_layer: Any, *, scan: bool, remat: str):
    """carry, out_i = body(layer_i, carry, per_layer_i) over every layer -> (carry, outs).

    per_layer (e.g. a KV cache) is None or holds one entry per layer, laid out like the layers:
    stacked (a pytree with a leading layer axis, outs stacked likewise) for `scan`, else a sequence
    of per-layer pytrees (outs a tuple), so each separate layer updates its own buffers in place
    rather than slicing them from, and stacking them back into, one array. The scanned path is a
    plain `jax.lax.scan` over the split layer state (each step merges one layer), so it composes
    with any enclosing jit/grad/scan.
    """
    if remat != "none" and remat not in REMAT_POLICIES:
        raise ValueError(
            f"unknown remat policy {remat!r}; expected 'none' or one of {sorted(REMAT_POLICIES)}"
        )

    def checkpointed(fn):
        return fn if remat == "none" else jax.checkpoint(fn, policy=REMAT_POLICIES[remat])

    if scan:
        graphdef, stacked = nnx.split(layers)

        @checkpointed
        def step(c, xs):
            weights, per = xs
            return body(nnx.merge(graphdef, weights), c, per)

        return jax.lax.scan(step, carry, (stacked, per_layer))
    outs = []
    for i, layer in enumerate(layers):
        graphdef, weights = nnx.split(layer)
        xs = None if per_layer is None else per_layer[i]
        carry, out = checkpointed(lambda c, w, x, g=graphdef: body(nnx.merge(g, w), c, x))(
            carry, weights, xs
        )
        outs.append(out)
    return carry, None if per_layer is None else tuple(outs)


def unstacked(module_fn: Callable[[], nnx.Module], stacked_model: nnx.Module) -> nnx.Module:
    """The same weights as separate per-layer modules: `module_fn()` builds the scan=False twin
    (only traced, never allocated); layer i takes row i of each stacked 'layers' parameter.

    Decoding is weight-bandwidth bound, and a `lax.scan` over stacked weights slices (copies) every
    layer's weights on each step on CPU; separate layers are read in place (benchmarks/decode.py).
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(module_fn))
    stacked = dict(nnx.to_flat_state(nnx.state(stacked_model)))

    def take(path):
        if "layers" in path:
            at = path.index("layers")
            if isinstance(path[at + 1], int):
                return stacked[path[: at + 1] + path[at + 2 :]].get_value()[path[at + 1]]
        return stacked[path].get_value()

    flat = [(path, var.replace(take(path))) for path, var in nnx.to_flat_state(abstract)]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))
