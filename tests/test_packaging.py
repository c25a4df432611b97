"""pyproject lists packages by hand (kernels/ installs as andesvl_jax.kernels): none may be missing."""

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
    found |= {
        "andesvl_jax." + ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "kernels").rglob("__init__.py")
    }
    assert found == listed, f"unlisted: {sorted(found - listed)}; stale: {sorted(listed - found)}"
