"""What every Pallas kernel here shares: interpret mode, compiler params, padding.

Interpret mode: Pallas cannot compile for the CPU, so on a CPU backend kernels always run in
interpret mode (the kernel body is evaluated by XLA, one grid step at a time — slow, exact, and the
way the CPU tests check the kernels). `ANDESVL_PALLAS_INTERPRET=1` (or `set_interpret(True)`) forces
interpret mode on GPU/TPU too, which is how to debug a kernel on an accelerator.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

_INTERPRET_OVERRIDE: bool | None = None


def set_interpret(value: bool | None) -> None:
    """Force (True/False) or reset (None) interpret mode for every kernel of this package."""
    global _INTERPRET_OVERRIDE
    _INTERPRET_OVERRIDE = value


def use_interpret(interpret: bool | None = None) -> bool:
    """The interpret flag a kernel call uses: argument > set_interpret > env > backend."""
    if interpret is not None:
        return interpret
    if _INTERPRET_OVERRIDE is not None:
        return _INTERPRET_OVERRIDE
    if os.environ.get("ANDESVL_PALLAS_INTERPRET", "") not in ("", "0"):
        return True
    return jax.default_backend() == "cpu"


def _triton_params(num_warps: int, num_stages: int):
    from jax.experimental.pallas import triton as plgpu

    return plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)


# Backend -> factory of compiler params. TPU (Mosaic) uses its defaults; interpret mode needs none.
_COMPILER_PARAMS: dict[str, Callable[..., object]] = {"gpu": _triton_params, "cuda": _triton_params}


def compiler_params(interpret: bool, num_warps: int = 4, num_stages: int = 2):
    """Compiler params for the current backend (None: interpret mode or defaults)."""
    if interpret:
        return None
    factory = _COMPILER_PARAMS.get(jax.default_backend())
    return None if factory is None else factory(num_warps, num_stages)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_axis(x: jax.Array, axis: int, size: int, value=0) -> jax.Array:
    """Pad `x` along `axis` at the end to length `size` with `value` (no-op if already long)."""
    extra = size - x.shape[axis]
    if extra == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths, constant_values=value)


def pick_tile(n: int, preferred: int, minimum: int = 16) -> int:
    """A power-of-two tile <= `preferred` not grossly above `n` (Triton wants 2^k)."""
    tile = minimum
    while tile < preferred and tile < n:
        tile *= 2
    return tile


@functools.cache
def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())
