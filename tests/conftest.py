"""Test-wide JAX set-up: 8 host devices and the persistent compilation cache, before jax is imported."""

import importlib.util
import os
import pathlib
import sys


def _unshadow_pypi_kernels() -> None:
    """Take the repository root off sys.path when andesvl_jax is importable without it.

    `python -m pytest` and xdist's workers (`python -c`) put the working directory on sys.path, and
    at the repository root that makes our `kernels/` (installed as `andesvl_jax.kernels`) the
    top-level `kernels` module, shadowing PyPI's `kernels` package, which transformers >= 5 imports
    whenever it is installed (`ImportError: cannot import name 'CUDAProperties' from 'kernels'`).
    A plain checkout that is not installed keeps the root: it needs it to import andesvl_jax.
    """
    root = pathlib.Path(__file__).resolve().parents[1]
    keep = [p for p in sys.path if pathlib.Path(p or ".").resolve() != root]
    saved, sys.path[:] = list(sys.path), keep
    importlib.invalidate_caches()
    if importlib.util.find_spec("andesvl_jax") is None:
        sys.path[:] = saved


_unshadow_pypi_kernels()
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".cache" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", False)
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# ANDESVL_FIXTURES points elsewhere (tests/test_missing_fixtures.py uses it to check the skip).
FIXTURES = pathlib.Path(
    os.environ.get("ANDESVL_FIXTURES")
    or pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures"
)


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    """The official tiny AndesVL checkpoints (../shared/fixtures)."""
    if not FIXTURES.is_dir():
        pytest.skip(
            f"official fixtures not found at {FIXTURES}: clone the repository beside ../shared "
            "to run the parity tests against the official AndesVL code"
        )
    return FIXTURES
