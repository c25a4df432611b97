"""andesvl-jax: the AndesVL on-device vision-language models in JAX/Flax NNX."""

import pathlib as _pathlib

__version__ = "0.1.0"

# `kernels/` and `export/` live at the repository root, as the user's layout asks, but are
# subpackages of this one: an installed wheel maps them in (pyproject's package-dir); a plain
# checkout on sys.path finds them here, so tests and tools never depend on `pip install -e`.
# Only a checkout of this project (its pyproject beside us) is searched, never site-packages,
# where an unrelated PyPI package named `kernels` may live.
_ROOT = _pathlib.Path(__file__).resolve().parent.parent
if (_ROOT / "kernels" / "dispatch.py").is_file() and (_ROOT / "pyproject.toml").is_file():
    __path__.append(str(_ROOT))  # noqa: F821  (a package's __path__)
