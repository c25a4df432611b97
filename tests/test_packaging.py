"""pyproject lists packages by hand (kernels/ and export/ install under andesvl_jax): none may be missing."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    package = ROOT / "andesvl_jax"
    found = {  # every directory ships, data-only ones (assets/) too
        ".".join(d.relative_to(ROOT).parts)
        for d in [package, *package.rglob("*")]
        if d.is_dir() and d.name != "__pycache__"
    }
    found |= {  # the top-level kernels/ and export/ install under andesvl_jax
        "andesvl_jax." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("kernels", "export")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed, f"unlisted: {sorted(found - listed)}; stale: {sorted(listed - found)}"
