"""Function calls as text: `<nexa_i>('value', 3)<nexa_end>` (functional tokens, Octopus v2) or
`name('value', 3)` (the function-name-as-text baseline); parsing back with schema checks.

Arguments are positional in the function's order: strings single-quoted (no quote, backslash or
newline inside), integers bare, booleans `true` / `false`, separated by ", ". A request that no
function serves is answered `<nexa_none>` + plain text (token style) or plain text (text style).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from andesvl_jax.agent.functions import STRING_FORBIDDEN, ArgSpec, FunctionRegistry

END_TOKEN = "<nexa_end>"
NONE_TOKEN = "<nexa_none>"
STYLES = ("token", "text")


def function_token(i: int) -> str:
    return f"<nexa_{i}>"


class CallParseError(ValueError):
    """Generated text that is not a well-formed call."""


class CallSchemaError(ValueError):
    """A well-formed call whose arguments break the function's schema (never executed)."""


@dataclasses.dataclass(frozen=True)
class FunctionCall:
    name: str
    args: dict[str, Any]

    def to_json(self) -> dict:
        return {"function": self.name, "arguments": dict(self.args)}


@dataclasses.dataclass(frozen=True)
class NoCall:
    """The model answered in text: no function serves the request."""

    text: str

    def to_json(self) -> dict:
        return {"function": None, "text": self.text}


def format_value(spec: ArgSpec, value) -> str:
    if spec.type == "integer":
        return str(int(value))
    if spec.type == "boolean":
        return "true" if value else "false"
    return f"'{value}'"


def format_call(
    call: FunctionCall | NoCall, registry: FunctionRegistry, style: str = "token"
) -> str:
    """The target text of a call (or of a text answer) in `style` ('token' or 'text')."""
    if style not in STYLES:
        raise ValueError(f"call style {style!r}: expected one of {STYLES}")
    if isinstance(call, NoCall):
        return (NONE_TOKEN if style == "token" else "") + call.text
    spec = registry.get(call.name)
    check_args(call, registry)
    body = ", ".join(format_value(a, call.args[a.name]) for a in spec.arguments)
    if style == "token":
        return f"{function_token(registry.index(call.name))}({body}){END_TOKEN}"
    return f"{call.name}({body})"


_VALUE = re.compile(r"'([^'\n\\]*)'|(-?\d+)|(true|false)")


def _split_args(body: str, where: str) -> list[Any]:
    values, pos = [], 0
    while pos < len(body):
        m = _VALUE.match(body, pos)
        if m is None:
            raise CallParseError(f"{where}: bad argument at {body[pos : pos + 20]!r}")
        if m.group(1) is not None:
            values.append(m.group(1))
        elif m.group(2) is not None:
            values.append(int(m.group(2)))
        else:
            values.append(m.group(3) == "true")
        pos = m.end()
        if pos < len(body):
            if not body.startswith(", ", pos):
                raise CallParseError(f"{where}: expected ', ' between arguments at {pos}")
            pos += 2
            if pos == len(body):
                raise CallParseError(f"{where}: trailing ', '")
    return values


def check_value(spec: ArgSpec, value, where: str) -> None:
    """Raise CallSchemaError unless `value` fits the argument's type, enum, format and range."""
    if spec.type == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise CallSchemaError(f"{where}: {spec.name} must be an integer, got {value!r}")
        if (spec.minimum is not None and value < spec.minimum) or (
            spec.maximum is not None and value > spec.maximum
        ):
            raise CallSchemaError(
                f"{where}: {spec.name}={value} outside [{spec.minimum}, {spec.maximum}]"
            )
    elif spec.type == "boolean":
        if not isinstance(value, bool):
            raise CallSchemaError(f"{where}: {spec.name} must be true or false, got {value!r}")
    else:
        if not isinstance(value, str) or not value:
            raise CallSchemaError(f"{where}: {spec.name} must be a non-empty string, got {value!r}")
        if spec.enum is not None and value not in spec.enum:
            raise CallSchemaError(f"{where}: {spec.name}={value!r} not one of {list(spec.enum)}")
        allowed = spec.allowed_chars()
        bad = sorted({c for c in value if c in STRING_FORBIDDEN or (allowed and c not in allowed)})
        if bad:
            raise CallSchemaError(f"{where}: {spec.name}={value!r} holds characters {bad}")
        if len(value) > spec.max_length:
            raise CallSchemaError(
                f"{where}: {spec.name} is {len(value)} characters, at most {spec.max_length}"
            )


def check_args(call: FunctionCall, registry: FunctionRegistry) -> None:
    spec = registry.get(call.name)
    names = [a.name for a in spec.arguments]
    if sorted(call.args) != sorted(names):
        raise CallSchemaError(f"{call.name}: arguments {sorted(call.args)}, expected {names}")
    for a in spec.arguments:
        check_value(a, call.args[a.name], call.name)


_TOKEN_CALL = re.compile(r"<nexa_(\d+)>\((.*)\)<nexa_end>\Z", re.DOTALL)
_TEXT_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\Z", re.DOTALL)


def parse_call(
    text: str, registry: FunctionRegistry, style: str = "token"
) -> FunctionCall | NoCall:
    """Generated text (special tokens kept, the turn's end marker removed) -> the call or the text
    answer. Raises CallParseError (malformed) or CallSchemaError (arguments break the schema)."""
    text = text.strip()
    if style == "token":
        if text.startswith(NONE_TOKEN):
            return NoCall(text[len(NONE_TOKEN) :].strip())
        m = _TOKEN_CALL.match(text)
        if m is None:
            raise CallParseError(
                f"not a call <nexa_i>(...)<nexa_end> nor {NONE_TOKEN}: {text[:80]!r}"
            )
        index = int(m.group(1))
        if index >= len(registry):
            raise CallParseError(f"<nexa_{index}>: only {len(registry)} functions")
        name = registry.functions[index].name
    elif style == "text":
        m = _TEXT_CALL.match(text)
        if m is None or m.group(1) not in registry.names:
            return NoCall(text)
        name = m.group(1)
    else:
        raise ValueError(f"call style {style!r}: expected one of {STYLES}")
    spec = registry.get(name)
    values = _split_args(m.group(2), name)
    if len(values) != len(spec.arguments):
        raise CallSchemaError(f"{name}: {len(values)} arguments, expected {len(spec.arguments)}")
    call = FunctionCall(name, {a.name: v for a, v in zip(spec.arguments, values, strict=True)})
    check_args(call, registry)
    return call
