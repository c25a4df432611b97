"""The argument of `--config experiments/FILE.py:ARG`: `key=value` items, checked against a table.

Each experiment file declares its arguments in a module-level `ARGS` table (name -> `Arg`) and calls
`parse_config_arg(arg, ARGS, __file__)` in `get_config`; tests/test_experiment_configs.py loads
every file at every value the tables list, so a newly declared argument is tested automatically.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any


class ConfigArgError(Exception):
    """A malformed `k=v` list, an unknown key, or a value the argument does not take.

    Not a ValueError on purpose: config_flags and absl re-raise those with the traceback pasted
    into the message; this one reaches `train.launch.load_config` as it is.
    """


@dataclasses.dataclass(frozen=True)
class Arg:
    """One experiment argument.

    default: the spelling used when the argument is not given (None: the value is None).
    choices: the values it takes (a tuple of spellings, or spelling -> value); empty: any string
    `type` parses. example: a value the config test passes for a free (choice-less) argument.
    """

    default: str | None = None
    choices: tuple[str, ...] | Mapping[str, Any] = ()
    type: Callable[[str], Any] = str
    help: str = ""
    example: str | None = None

    def parse(self, key: str, text: str, where: str) -> Any:
        if self.choices:
            if text not in self.choices:
                raise ConfigArgError(
                    f"{where}: {key}={text!r} is not one of {'|'.join(self.choices)}"
                )
            return self.choices[text] if isinstance(self.choices, Mapping) else text
        try:
            return self.type(text)
        except ValueError as e:
            name = getattr(self.type, "__name__", str(self.type))
            raise ConfigArgError(f"{where}: {key}={text!r} is not a valid {name}: {e}") from None

    def values(self) -> list[str]:
        """The spellings a test should try: every choice, or the example (if any)."""
        return list(self.choices) if self.choices else [v for v in (self.example,) if v]


def describe_args(table: Mapping[str, Arg]) -> str:
    """`key=a|b (default a): help; ...` for docstrings and error messages."""
    parts = []
    for key, a in table.items():
        spell = "|".join(a.choices) if a.choices else getattr(a.type, "__name__", "value").upper()
        default = "" if a.default is None else f" (default {a.default})"
        parts.append(f"{key}={spell}{default}" + (f": {a.help}" if a.help else ""))
    return "; ".join(parts)


def _label(where: str, arg: str) -> str:
    """'/repo/experiments/tiny.py', 'stag=sft' -> 'experiments/tiny.py:stag=sft' (as on the CLI)."""
    path = pathlib.Path(where)
    if path.suffix == ".py":
        name = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
        return f"{name}:{arg}" if arg else name
    return f"{where} {arg}" if arg else where


def parse_config_arg(arg: str, table: Mapping[str, Arg], where: str = "config") -> dict[str, Any]:
    """`"size=1b,stage=sft"` -> every key of `table`, parsed, defaults for the ones not given.

    Raises ConfigArgError naming `where` (the experiment file) for an item that is not `k=v`, a
    key not in `table`, a key given twice, or a value the argument does not take.
    """
    where = _label(where, arg)
    given: dict[str, str] = {}
    for item in (s.strip() for s in arg.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigArgError(
                f"{where}: {item!r} is not key=value; arguments: {describe_args(table)}"
            )
        if key not in table:
            raise ConfigArgError(
                f"{where}: unknown argument {key!r}; arguments: {describe_args(table)}"
            )
        if key in given:
            raise ConfigArgError(f"{where}: argument {key!r} given twice")
        given[key] = value
    out = {}
    for key, a in table.items():
        text = given.get(key, a.default)
        out[key] = None if text is None else a.parse(key, text, where)
    return out
