"""A simulated phone: executes a FunctionCall and returns what the app would report.

Handlers form a registry (function name -> handler). A call is checked against the schema first and
never executed if it fails (`ExecutionError`). With a `scene` (the true call of the request the
picture and text describe, as the corpus records it) the phone also reports whether the action was
the right one for that scene (`matches_scene`): the execution feedback GRPO rewards.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

from andesvl_jax.agent.calls import CallSchemaError, FunctionCall, check_args
from andesvl_jax.agent.functions import FunctionRegistry

PRICES = {
    "headphones": 59.0,
    "mug": 9.5,
    "lamp": 24.0,
    "book": 14.0,
    "shoe": 45.0,
    "watch": 120.0,
    "apple": 0.6,
    "banana": 0.3,
    "carrot": 0.25,
    "milk": 1.2,
    "bread": 2.5,
    "egg": 0.3,
}


class ExecutionError(RuntimeError):
    """The phone refused the call (schema failure or unknown function): nothing was executed."""


@dataclasses.dataclass
class Execution:
    ok: bool
    result: dict
    matches_scene: bool | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _ref(call: FunctionCall) -> str:
    return hashlib.sha1(repr(sorted(call.args.items())).encode()).hexdigest()[:8]


Handler = Callable[[FunctionCall], dict]
HANDLERS: dict[str, Handler] = {
    "send_email": lambda c: {
        "status": "sent",
        "to": f"{c.args['recipient']}@example.com",
        "subject": c.args["topic"].title(),
    },
    "send_text_message": lambda c: {
        "status": "delivered",
        "to": c.args["phone"],
        "text": c.args["message"],
    },
    "google_search": lambda c: {
        "results": [f"{c.args['query']} - Wikipedia", f"Buy {c.args['query']} online"]
    },
    "amazon_shopping": lambda c: {
        "order": _ref(c),
        "total": round(PRICES.get(c.args["product"], 10.0) * c.args["quantity"], 2),
    },
    "smart_recycling": lambda c: {"bin": c.args["bin"], "pickup": "Tuesday"},
    "lost_and_found": lambda c: {"report": _ref(c), "item": f"{c.args['colour']} {c.args['item']}"},
    "interior_design": lambda c: {
        "plan": _ref(c),
        "room": c.args["room"],
        "style": c.args["style"],
    },
    "instacart_shopping": lambda c: {
        "order": _ref(c),
        "total": round(PRICES.get(c.args["item"], 1.0) * c.args["quantity"], 2),
    },
    "doordash_delivery": lambda c: {"order": _ref(c), "eta_minutes": 35},
    "pet_care": lambda c: {
        "appointment": _ref(c),
        "pet": c.args["pet"],
        "reason": c.args["problem"],
    },
}


class PhoneAPI:
    def __init__(self, registry: FunctionRegistry, handlers: dict[str, Handler] | None = None):
        self.registry, self.handlers = registry, handlers or HANDLERS

    def execute(self, call: FunctionCall, scene: dict | None = None) -> Execution:
        """Run `call`; scene: the corpus's true call as JSON ({"function", "arguments"}) or None."""
        if call.name not in self.handlers or call.name not in self.registry.names:
            raise ExecutionError(f"the phone has no app for {call.name!r}")
        try:
            check_args(call, self.registry)
        except CallSchemaError as e:
            raise ExecutionError(f"not executed: {e}") from e
        result = self.handlers[call.name](call)
        matches = None
        if scene is not None:
            matches = scene.get("function") == call.name and scene.get("arguments") == call.args
        return Execution(True, result, matches)
