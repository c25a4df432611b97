"""The package's imports run one way down the layers and form no cycle (docs/architecture.md).

Every `import` / `from ... import` in andesvl_jax/ and kernels/ counts, including the lazy ones
inside functions: a lazy import against the order is still a dependency against the order.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Lower rank = lower layer. A module may import its own package or packages of lower rank only.
LAYERS: dict[str, float] = {
    "__init__": 0,
    "config": 0,
    "configs": 0.5,  # run-config schema and experiment args, over the model presets (config)
    "sharding": 1,
    "kernels": 2,
    "models": 3,
    "assets": 4,
    "data": 4,
    "convert": 5,
    "compress": 6,
    "infer": 7,
    "train": 8,
    "agent": 9,
    "eval": 10,
    "export": 11,
    "jobs": 12,
    "cli": 13,
    "__main__": 14,
}


def _source_files() -> dict[str, pathlib.Path]:
    """Module name -> file, kernels/ and export/ as andesvl_jax.kernels / .export (how they install)."""
    modules = {}
    for top, prefix in (
        (ROOT / "andesvl_jax", "andesvl_jax"),
        (ROOT / "kernels", "andesvl_jax.kernels"),
        (ROOT / "export", "andesvl_jax.export"),
    ):
        for path in top.rglob("*.py"):
            parts = path.relative_to(top).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((prefix, *parts))] = path
    return modules


MODULES = _source_files()


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The andesvl_jax modules `name` imports (a package import counts as its __init__)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[
                    : len(name.split(".")) - node.level + (1 if is_package else 0)
                ]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_layer():
    missing = sorted({_layer(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"give these top-level modules/packages a rank in LAYERS: {missing}"


def test_imports_run_down_the_layers():
    bad = [
        f"{src} ({_layer(src)}, rank {LAYERS[_layer(src)]}) imports {dst} "
        f"({_layer(dst)}, rank {LAYERS[_layer(dst)]})"
        for src, targets in GRAPH.items()
        for dst in targets
        if _layer(src) != _layer(dst) and LAYERS[_layer(dst)] >= LAYERS[_layer(src)]
    ]
    assert not bad, "imports against the layer order:\n" + "\n".join(sorted(bad))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package __init__ that re-exports its own submodules is not a cycle with them.
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_violations():
    """The checks themselves can fail: an upward import and a cycle are caught."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    assert LAYERS[_layer("andesvl_jax.train.loop")] > LAYERS[_layer("andesvl_jax.models.qwen3")]


@pytest.mark.parametrize("module", ["andesvl_jax.kernels", "andesvl_jax.kernels.dispatch"])
def test_kernels_import_from_a_plain_checkout(module, tmp_path):
    """`kernels/` resolves as andesvl_jax.kernels with only the checkout on sys.path (no install)."""
    import subprocess
    import sys

    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import importlib; m = importlib.import_module({module!r}); "
        f"assert m.__file__.startswith({str(ROOT / 'kernels')!r}), m.__file__"
    )
    env = {"PYTHONNOUSERSITE": "1", "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    # -S keeps the editable-install finder (a site .pth) out, so only the checkout can provide it.
    site = [p for p in sys.path if p.endswith("site-packages")]
    env["PYTHONPATH"] = ":".join(site)
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
