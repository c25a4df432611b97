"""impl = "auto" | "xla" | "pallas" | ... for every kernel: one registry, no if-chains.

"auto" picks, per backend, the first impl of `AUTO_ORDER` that has run compiled on that backend
(`VALIDATED`), so a kernel that has only been lowered, never run, is never chosen silently. This is
the only attention registry: the models call `dot_product_attention(..., impl=cfg.attention_impl)`;
the compression code calls `quantized_matmul` / `lora_matmul`. Leading batch dimensions of x are
flattened to rows and restored. Policy and status: docs/kernels.md.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from andesvl_jax.kernels.attention import packed_attention
from andesvl_jax.kernels.attention_blockwise import DEFAULT_BLOCK, blockwise_attention
from andesvl_jax.kernels.attention_cudnn import cudnn_attention, cudnn_unsupported
from andesvl_jax.kernels.attention_ref import xla_attention
from andesvl_jax.kernels.lora_matmul import lora_delta_ref, lora_matmul_pallas, lora_matmul_ref
from andesvl_jax.kernels.quant_format import PackedWeight
from andesvl_jax.kernels.quant_matmul import (
    quantized_matmul_a8_pallas,
    quantized_matmul_a8_ref,
    quantized_matmul_pallas,
    quantized_matmul_ref,
)
from andesvl_jax.kernels.sparse_format import SparseWeight
from andesvl_jax.kernels.sparse_matmul import sparse_matmul_pallas, sparse_matmul_ref

# op -> impl -> function. Weight-format ops are keyed by the packed weight's type below.
KERNELS: dict[str, dict[str, Callable]] = {
    "attention": {
        "xla": xla_attention,  # the reference: materialises float32 [b, h, t, s] logits
        "blockwise": blockwise_attention,  # pure XLA, O(t) memory, blockwise backward
        "cudnn": cudnn_attention,  # jax.nn cuDNN flash (GPU, bf16/fp16)
        "pallas": packed_attention,  # our Triton flash kernel
    },
    "quantized_matmul": {"xla": quantized_matmul_ref, "pallas": quantized_matmul_pallas},
    "quantized_matmul_a8": {"xla": quantized_matmul_a8_ref, "pallas": quantized_matmul_a8_pallas},
    "sparse_matmul": {"xla": sparse_matmul_ref, "pallas": sparse_matmul_pallas},
    "lora_matmul": {"xla": lora_matmul_ref, "pallas": lora_matmul_pallas},
    "lora_delta": {"xla": lora_delta_ref},  # the LoRA term alone (a base linear adds its own)
}
WEIGHT_MATMULS: dict[type, str] = {PackedWeight: "quantized_matmul", SparseWeight: "sparse_matmul"}

# Plain XLA programs: no backend-specific lowering, so the program the CPU tests run compiled is
# the one XLA compiles for GPU/TPU. They count as validated everywhere; custom kernels do not.
PORTABLE = frozenset({"xla", "blockwise"})
# backend -> op -> custom kernels that have run compiled there and matched the reference (by
# benchmarks/device_check.sh). Pallas runs only interpreted on CPU; no kernel has run on a device
# yet, so this is empty: add (e.g.) VALIDATED["gpu"]["attention"] = {"cudnn"} once one has.
VALIDATED: dict[str, dict[str, frozenset[str]]] = {}
# op -> backend -> impls "auto" tries in order (first validated wins); "*" = any other backend.
_DEFAULT_ORDER = {"gpu": ("pallas", "xla"), "tpu": ("pallas", "xla"), "*": ("xla",)}
AUTO_ORDER: dict[str, dict[str, tuple[str, ...]]] = {
    "attention": {
        "gpu": ("cudnn", "pallas", "blockwise"),
        "tpu": ("pallas", "blockwise"),
        "*": ("blockwise",),
    },
}
# op -> (size, impl): at or below this problem size "auto" takes impl. For attention the size is
# t*s score entries per (row, head): up to one blockwise tile the reference holds no more than a
# tile, is as fast, and compiles ~2x faster (what keeps the tiny CPU models and tests quick).
AUTO_SMALL: dict[str, tuple[int, str]] = {"attention": (DEFAULT_BLOCK * DEFAULT_BLOCK, "xla")}
# (op, impl) -> f(*args) -> why it cannot run these arguments (None: it can); "auto" skips it then.
AUTO_GUARDS: dict[tuple[str, str], Callable[..., str | None]] = {
    ("attention", "cudnn"): cudnn_unsupported,
}
_BACKENDS = {"cuda": "gpu", "rocm": "gpu"}


def register_kernel(op: str, impl: str) -> Callable[[Callable], Callable]:
    """Decorator: make `fn` the `impl` implementation of `op` (e.g. a new attention backend)."""

    def wrap(fn: Callable) -> Callable:
        KERNELS.setdefault(op, {})[impl] = fn
        return fn

    return wrap


def backend() -> str:
    """The default backend's family name: 'cpu', 'gpu' (CUDA or ROCm) or 'tpu'."""
    name = jax.default_backend()
    return _BACKENDS.get(name, name)


def is_validated(op: str, impl: str, on: str | None = None) -> bool:
    """Has `impl` of `op` run compiled on backend `on` (default: this one) and matched?"""
    return impl in PORTABLE or impl in VALIDATED.get(on or backend(), {}).get(op, frozenset())


def resolve_impl(
    impl: str = "auto", op: str | None = None, *, size: int | None = None, args: tuple = ()
) -> str:
    """'auto' -> the first validated impl of AUTO_ORDER[op] for this backend (AUTO_SMALL at or below
    `size`; an impl whose AUTO_GUARDS rejects `args` is skipped); other names are checked."""
    if impl != "auto":
        known = sorted(KERNELS.get(op, {})) if op else ["pallas", "xla"]
        if impl not in known:
            raise ValueError(
                f"unknown {op or 'kernel'} impl {impl!r}; expected 'auto' or one of {known}"
            )
        return impl
    small = AUTO_SMALL.get(op)
    if small is not None and size is not None and size <= small[0]:
        return small[1]
    orders = AUTO_ORDER.get(op, _DEFAULT_ORDER)
    here = backend()
    for name in orders.get(here, orders["*"]):
        guard = AUTO_GUARDS.get((op, name))
        if is_validated(op, name, here) and not (guard and args and guard(*args)):
            return name
    raise RuntimeError(f"no validated {op} impl for backend {here!r} in {orders}")  # a table bug


def get_kernel(op: str, impl: str = "auto", **policy) -> Callable:
    """The function implementing `op` for `impl` (`policy`: resolve_impl's size / args)."""
    if op not in KERNELS:
        raise KeyError(f"unknown kernel {op!r}; registered: {sorted(KERNELS)}")
    return KERNELS[op][resolve_impl(impl, op, **policy)]


def resolve_attention(impl: str, q: jax.Array, k: jax.Array) -> str:
    """The attention impl `impl` means for q: [b, t, h, d] against k: [b, s, kv, d] here."""
    return resolve_impl(impl, "attention", size=q.shape[1] * k.shape[1], args=(q, k))


def _rows(x: jax.Array) -> jax.Array:
    return x.reshape(-1, x.shape[-1])


def quantized_matmul(
    x: jax.Array, w: PackedWeight | SparseWeight, *, impl: str = "auto"
) -> jax.Array:
    """x: [..., K] float @ packed (low-bit or 1:4 sparse) weight -> [..., N] in x.dtype."""
    if type(w) not in WEIGHT_MATMULS:
        raise TypeError(
            f"expected one of {[t.__name__ for t in WEIGHT_MATMULS]}, got {type(w).__name__}"
        )
    y = get_kernel(WEIGHT_MATMULS[type(w)], impl)(_rows(x), w)
    return y.reshape(*x.shape[:-1], y.shape[-1])


def quantized_matmul_a8(
    x_q: jax.Array, x_scale: jax.Array, w: PackedWeight, *, impl: str = "auto", **dtypes
) -> jax.Array:
    """x_q: int8 [..., K], x_scale: [...] per token -> [..., N] (compute/out dtypes)."""
    y = get_kernel("quantized_matmul_a8", impl)(_rows(x_q), x_scale.reshape(-1), w, **dtypes)
    return y.reshape(*x_q.shape[:-1], y.shape[-1])


def lora_matmul(
    x: jax.Array,
    w: jax.Array,
    lora_a: jax.Array,
    lora_b: jax.Array,
    adapter_ids: jax.Array,
    *,
    scale: float = 1.0,
    impl: str = "auto",
) -> jax.Array:
    """x: [..., K]; w: [K, N]; lora_a: [L, K, r]; lora_b: [L, r, N]; adapter_ids: int [...]."""
    y = get_kernel("lora_matmul", impl)(
        _rows(x), w, lora_a, lora_b, adapter_ids.reshape(-1), scale=scale
    )
    return y.reshape(*x.shape[:-1], y.shape[-1])


def lora_delta(
    x: jax.Array,
    lora_a: jax.Array,
    lora_b: jax.Array,
    adapter_ids: jax.Array,
    *,
    scale: float = 1.0,
    impl: str = "auto",
) -> jax.Array:
    """scale * (x @ A[id]) @ B[id] per row: x [..., K]; lora_a [L, K, r]; lora_b [L, r, N];
    adapter_ids int [...] (-1: none) -> float32 [..., N]."""
    y = get_kernel("lora_delta", impl)(
        _rows(x), lora_a, lora_b, adapter_ids.reshape(-1), scale=scale
    )
    return y.reshape(*x.shape[:-1], y.shape[-1])


def dot_product_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, *, impl: str = "auto", **kwargs
) -> jax.Array:
    """q: [b, t, h, d]; k, v: [b, s, kv, d] -> [b, t, h, d] by the registered `impl` (arguments and
    semantics: `attention_ref.xla_attention`; "auto": `resolve_attention`)."""
    return KERNELS["attention"][resolve_attention(impl, q, k)](q, k, v, **kwargs)
