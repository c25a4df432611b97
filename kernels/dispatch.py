"""impl = "auto" | "xla" | "pallas" for every kernel: one registry, no if-chains.

"auto" is Pallas on GPU/TPU and the XLA reference on CPU (where Pallas only runs interpreted, which
is exact but slow). This is the only attention registry: the models call `dot_product_attention(...,
impl=cfg.attention_impl)`; the compression code calls `quantized_matmul` / `lora_matmul`.
Leading batch dimensions of x are flattened to rows and restored.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from andesvl_jax.kernels.attention import packed_attention
from andesvl_jax.kernels.attention_ref import xla_attention
from andesvl_jax.kernels.lora_matmul import lora_matmul_pallas, lora_matmul_ref
from andesvl_jax.kernels.quant_format import PackedWeight
from andesvl_jax.kernels.quant_matmul import (
    quantized_matmul_a8_pallas,
    quantized_matmul_a8_ref,
    quantized_matmul_pallas,
    quantized_matmul_ref,
)
from andesvl_jax.kernels.sparse_format import SparseWeight
from andesvl_jax.kernels.sparse_matmul import sparse_matmul_pallas, sparse_matmul_ref

PALLAS_BACKENDS = ("gpu", "tpu", "cuda", "rocm")
# Per-op exceptions to "auto": the attention kernel's blocks do not meet Mosaic's (8, 128) rule yet
# (tests/kernels/test_gpu_lowering.py checks Triton only), so on TPU "auto" keeps the XLA attention.
AUTO_PALLAS_BACKENDS: dict[str, tuple[str, ...]] = {"attention": ("gpu", "cuda", "rocm")}


# op -> impl -> function. Weight-format ops are keyed by the packed weight's type below.
KERNELS: dict[str, dict[str, Callable]] = {
    "attention": {"xla": xla_attention, "pallas": packed_attention},
    "quantized_matmul": {"xla": quantized_matmul_ref, "pallas": quantized_matmul_pallas},
    "quantized_matmul_a8": {"xla": quantized_matmul_a8_ref, "pallas": quantized_matmul_a8_pallas},
    "sparse_matmul": {"xla": sparse_matmul_ref, "pallas": sparse_matmul_pallas},
    "lora_matmul": {"xla": lora_matmul_ref, "pallas": lora_matmul_pallas},
}
WEIGHT_MATMULS: dict[type, str] = {PackedWeight: "quantized_matmul", SparseWeight: "sparse_matmul"}


def register_kernel(op: str, impl: str) -> Callable[[Callable], Callable]:
    """Decorator: make `fn` the `impl` implementation of `op` (e.g. a new attention backend)."""

    def wrap(fn: Callable) -> Callable:
        KERNELS.setdefault(op, {})[impl] = fn
        return fn

    return wrap


def resolve_impl(impl: str = "auto", op: str | None = None) -> str:
    """'auto' -> 'pallas' on GPU/TPU (see AUTO_PALLAS_BACKENDS), 'xla' on CPU; others unchanged."""
    if impl == "auto":
        backends = AUTO_PALLAS_BACKENDS.get(op, PALLAS_BACKENDS)
        return "pallas" if jax.default_backend() in backends else "xla"
    known = sorted(KERNELS.get(op, {})) if op else ["pallas", "xla"]
    if impl not in known:
        raise ValueError(
            f"unknown {op or 'kernel'} impl {impl!r}; expected 'auto' or one of {known}"
        )
    return impl


def get_kernel(op: str, impl: str = "auto") -> Callable:
    """The function implementing `op` for `impl`."""
    if op not in KERNELS:
        raise KeyError(f"unknown kernel {op!r}; registered: {sorted(KERNELS)}")
    return KERNELS[op][resolve_impl(impl, op)]


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


def dot_product_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, *, impl: str = "auto", **kwargs
) -> jax.Array:
    """q: [b, t, h, d]; k, v: [b, s, kv, d] -> [b, t, h, d] by the registered `impl` (arguments and
    semantics: `attention_ref.xla_attention`)."""
    return get_kernel("attention", impl)(q, k, v, **kwargs)
