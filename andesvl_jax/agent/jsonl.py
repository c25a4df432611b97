"""The agent's JSONL format for real data, one request per line:

    {"image": "imgs/1.png", "request": "Buy 2 of these", "language": "en",
     "call": {"function": "amazon_shopping", "arguments": {"product": "mug", "quantity": 2}}}
    {"image": "imgs/2.png", "request": "Tell me a joke", "language": "en",
     "call": {"function": null}, "text": "Sorry, I can only use the phone's apps."}

Registered as data format `agent_jsonl` (data/formats FORMATS) by the agent plugin, so the
functional stage trains on it with `--config.data.format=agent_jsonl --config.data.path=F.jsonl`
(targets in the functional-token style, checked against the phone functions). `write_agent_jsonl`
exports synthetic samples (PNG images) in the same format. Bad records are DataErrors naming the
line and the field (a call that breaks the schema included).
"""

from __future__ import annotations

import json
import pathlib

from andesvl_jax.agent.calls import CallSchemaError, FunctionCall, NoCall, format_call
from andesvl_jax.agent.corpus import registry as phone_registry
from andesvl_jax.data.atomic_io import atomic_write_text
from andesvl_jax.data.errors import DataError
from andesvl_jax.data.formats import FORMATS
from andesvl_jax.data.formats.jsonl import JsonlSource
from andesvl_jax.data.sample import Message, Sample


def agent_record_to_sample(rec: dict, root: pathlib.Path, origin: str, registry=None) -> Sample:
    registry = registry or phone_registry()
    for key in ("image", "request", "call"):
        if key not in rec:
            raise DataError(origin, "missing_field", f"record has no {key!r} field")
    call = rec["call"]
    if not isinstance(call, dict) or "function" not in call:
        raise DataError(origin, "bad_field", "'call' must be {'function': name | null, ...}")
    try:
        parsed = (
            NoCall(str(rec.get("text", "")))
            if call["function"] is None
            else FunctionCall(call["function"], dict(call.get("arguments") or {}))
        )
        target = format_call(parsed, registry, "token")
    except (CallSchemaError, KeyError) as e:
        raise DataError(origin, "bad_call", f"the call breaks the function schema: {e}") from None
    image = pathlib.Path(rec["image"])
    image = image if image.is_absolute() else root / image
    return Sample(
        [Message("user", f"<image>\n{rec['request']}"), Message("assistant", target)],
        [str(image)],
        origin=origin,
        meta={
            "api": call["function"],
            "call": parsed.to_json(),
            "request": rec["request"],
            "language": rec.get("language", "en"),
            "answer": target,
            "style": "token",
        },
    )


def open_agent_jsonl(path, image_root=None, **kw) -> JsonlSource:
    return JsonlSource(path, agent_record_to_sample, image_root)


def write_agent_jsonl(samples, path: str | pathlib.Path) -> None:
    """Write corpus samples (their first image saved as PNG beside the file) as agent JSONL."""
    path = pathlib.Path(path)
    images = path.with_suffix("")
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, s in enumerate(samples):
        name = images / f"{k:06d}.png"
        s.images[0].save(name)
        call = s.meta["call"]
        rec = {
            "image": str(name.relative_to(path.parent)),
            "request": s.meta["request"],
            "language": s.meta["language"],
            "call": call,
        }
        if call["function"] is None:
            rec["text"] = call["text"]
        lines.append(json.dumps(rec, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


FORMATS.setdefault("agent_jsonl", open_agent_jsonl)
