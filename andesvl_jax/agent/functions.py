"""Function registry: the functions an agent may call, read from a JSON (or YAML) file.

File format (a list, or {"functions": [...]}):

    {"name": "smart_recycling", "description": "Tell which bin an item goes in ...",
     "arguments": [{"name": "bin", "type": "string", "enum": ["plastic", "paper", ...]},
                   {"name": "quantity", "type": "integer", "minimum": 1, "maximum": 9},
                   {"name": "phone", "type": "string", "format": "phone"}]}

Function i becomes the functional token `<nexa_i>` (agent/vocab.py) in file order. Argument types
are the ARG_TYPES keys; a string may carry an `enum` (its only values) or a `format` (FORMATS: the
characters it may hold). Every problem is a FunctionFileError naming the file and the entry.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

ARG_TYPES = ("string", "integer", "boolean")
# format name -> the characters a value of that format is made of
FORMATS: dict[str, str] = {
    "phone": "0123456789+-",
    "email": "abcdefghijklmnopqrstuvwxyz0123456789@._-",
    "digits": "0123456789",
}
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# characters a quoted string value may never hold (the quote ends it; a newline ends the turn)
STRING_FORBIDDEN = "'\n\\"


class FunctionFileError(ValueError):
    """A function file that cannot be used; the message names the file, the entry and the field."""


@dataclasses.dataclass(frozen=True)
class ArgSpec:
    name: str
    type: str
    description: str = ""
    enum: tuple[str, ...] | None = None
    format: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 64

    def allowed_chars(self) -> str | None:
        """Characters a free string value may hold (None: any but STRING_FORBIDDEN)."""
        return FORMATS[self.format] if self.format else None


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    name: str
    description: str
    arguments: tuple[ArgSpec, ...]


@dataclasses.dataclass(frozen=True)
class FunctionRegistry:
    """The functions of one file, in token order (function i = `<nexa_i>`)."""

    functions: tuple[FunctionSpec, ...]
    source: str = "<functions>"

    def __len__(self) -> int:
        return len(self.functions)

    def index(self, name: str) -> int:
        for i, f in enumerate(self.functions):
            if f.name == name:
                return i
        raise KeyError(f"{self.source}: no function {name!r}; known: {self.names}")

    def get(self, name: str) -> FunctionSpec:
        return self.functions[self.index(name)]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.functions]


def _fail(source: str, where: str, message: str):
    raise FunctionFileError(f"{source}: {where}: {message}")


def _arg(source: str, where: str, raw) -> ArgSpec:
    if not isinstance(raw, dict):
        _fail(source, where, f"an argument must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(ArgSpec)})
    if unknown:
        _fail(source, where, f"unknown fields {unknown}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        _fail(source, where, f"argument name {name!r} must be an identifier")
    kind = raw.get("type")
    if kind not in ARG_TYPES:
        _fail(source, f"{where} ({name})", f"unknown argument type {kind!r}; expected {ARG_TYPES}")
    enum = raw.get("enum")
    if enum is not None:
        if kind != "string":
            _fail(source, f"{where} ({name})", "an enum is only allowed on a string argument")
        if not enum or not all(isinstance(v, str) and v for v in enum):
            _fail(source, f"{where} ({name})", "enum must be a non-empty list of non-empty strings")
        if len(set(enum)) != len(enum):
            _fail(source, f"{where} ({name})", f"duplicate enum values in {enum}")
        bad = [v for v in enum if any(c in STRING_FORBIDDEN for c in v)]
        if bad:
            _fail(source, f"{where} ({name})", f"enum values {bad} hold a quote or newline")
        enum = tuple(enum)
    fmt = raw.get("format")
    if fmt is not None and (kind != "string" or fmt not in FORMATS):
        _fail(
            source,
            f"{where} ({name})",
            f"format {fmt!r}: a string format, one of {sorted(FORMATS)}",
        )
    if kind != "integer" and ("minimum" in raw or "maximum" in raw):
        _fail(source, f"{where} ({name})", "minimum / maximum apply to integers only")
    spec = ArgSpec(**{**raw, "enum": enum})
    if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        _fail(source, f"{where} ({name})", f"minimum {spec.minimum} > maximum {spec.maximum}")
    return spec


def parse_functions(raw, source: str = "<functions>") -> FunctionRegistry:
    """A FunctionRegistry from the parsed file content (list or {"functions": list})."""
    if isinstance(raw, dict):
        raw = raw.get("functions")
    if not isinstance(raw, list) or not raw:
        _fail(
            source, "top level", "expected a non-empty list of functions (or {'functions': [...]})"
        )
    functions, seen = [], set()
    for i, entry in enumerate(raw):
        where = f"function {i}"
        if not isinstance(entry, dict):
            _fail(source, where, f"expected an object, got {type(entry).__name__}")
        unknown = sorted(set(entry) - {"name", "description", "arguments"})
        if unknown:
            _fail(source, where, f"unknown fields {unknown}")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            _fail(source, where, f"name {name!r} must be an identifier")
        if name in seen:
            _fail(source, f"{where} ({name})", "duplicate function name")
        seen.add(name)
        description = entry.get("description")
        if not isinstance(description, str) or not description.strip():
            _fail(source, f"{where} ({name})", "needs a non-empty description")
        args = entry.get("arguments", [])
        if not isinstance(args, list):
            _fail(source, f"{where} ({name})", "arguments must be a list")
        specs = tuple(_arg(source, f"{where} ({name}) argument {j}", a) for j, a in enumerate(args))
        if len({a.name for a in specs}) != len(specs):
            _fail(source, f"{where} ({name})", "duplicate argument names")
        functions.append(FunctionSpec(name, description.strip(), specs))
    return FunctionRegistry(tuple(functions), source)


def load_functions(path: str | pathlib.Path) -> FunctionRegistry:
    """Read a function file (.json, or .yaml / .yml with PyYAML installed)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"function file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except (ValueError, ImportError) as e:
        raise FunctionFileError(f"{path}: cannot be read: {type(e).__name__}: {e}") from e
    return parse_functions(raw, str(path))


PHONE_FUNCTIONS = pathlib.Path(__file__).with_name("phone_functions.json")


def phone_functions() -> FunctionRegistry:
    """The 10 smartphone APIs of Octopus v3 (agent/phone_functions.json)."""
    return load_functions(PHONE_FUNCTIONS)
