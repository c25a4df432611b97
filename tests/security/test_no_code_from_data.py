"""No code execution from data: nothing in the package deserialises with pickle (or its cousins),
loads numpy object arrays, calls torch.load without weights_only=True or trusts remote code.
Config files (experiments/*.py) are the only code a user runs, on purpose. Dataset image paths
cannot escape the image root: tests/security/test_fuzz_datasets.py and test_fuzz_eval_readers.py.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCANNED = ("andesvl_jax", "kernels", "experiments", "export")
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "joblib"}


def _files():
    for top in SCANNED:
        if (ROOT / top).is_dir():
            yield from sorted((ROOT / top).rglob("*.py"))


def _violations(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    source = path.read_text()
    tree = ast.parse(source, str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name and name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}: imports {name}")
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if kwargs.get("allow_pickle") not in (None, "False"):
                found.append(f"{where}: {func}(allow_pickle={kwargs['allow_pickle']})")
            if kwargs.get("trust_remote_code") not in (None, "False"):
                found.append(f"{where}: {func}(trust_remote_code=...)")
            if func == "torch.load" and kwargs.get("weights_only") != "True":
                found.append(f"{where}: torch.load without weights_only=True")
            if func in ("marshal.loads", "eval", "exec") and path.parts[-2] != "experiments":
                found.append(f"{where}: {func}(...)")
    for m in re.finditer(r"pickle\.loads?\(", source):
        found.append(f"{path.relative_to(root)}: {m.group(0)}")
    return found


def test_no_pickle_or_remote_code_anywhere():
    bad = [v for path in _files() for v in _violations(path)]
    assert not bad, "code execution from data:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "snippet,expected",
    [
        ("import pickle\n", "imports pickle"),
        ("from dill import loads\n", "imports dill"),
        ("import numpy as np\nnp.load('x', allow_pickle=True)\n", "allow_pickle=True"),
        ("import torch\ntorch.load('x')\n", "without weights_only"),
        ("from transformers import A\nA.from_pretrained('x', trust_remote_code=True)\n", "trust"),
        ("exec('1')\n", "exec"),
    ],
)
def test_the_scan_catches_each_pattern(tmp_path, snippet, expected):
    (tmp_path / "bad.py").write_text(snippet)
    found = _violations(tmp_path / "bad.py", tmp_path)
    assert any(expected in v for v in found), found


def test_safe_torch_load_is_allowed(tmp_path):
    (tmp_path / "ok.py").write_text("import torch\ntorch.load('x', weights_only=True)\n")
    assert _violations(tmp_path / "ok.py", tmp_path) == []
