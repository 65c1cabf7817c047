"""The wire models as one JSON Schema document (`docs/protocol.schema.json`).

The browser client's TypeScript frame types are generated from that file (web/, `npm run
gen:types`); tests fail when the committed file and these models disagree. Regenerate with
`python -m confide.schema > docs/protocol.schema.json`.

Client frames are described as the server validates them (fields with defaults optional);
server frames as `Frame.dump()` writes them: a field is required unless its default is None
(`dump()` leaves out top-level fields that are None).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from confide import protocol as p

CLIENT_FRAMES: tuple[type[p.Frame], ...] = (
    p.Hello, p.Ping, p.ChatMessage, p.StatusUpdate, p.HistoryRequest, p.End,
    p.NotificationAck, p.ListRequest, p.Subscribe, p.Unsubscribe, p.Submit,
)
SERVER_FRAMES: tuple[type[p.Frame], ...] = (
    p.Welcome, p.ChatWelcome, p.InboxWelcome, p.Pong, p.Ack, p.MessageEvent, p.StatusEvent,
    p.Presence, p.History, p.Ended, p.Error, p.Notification, p.Notifications, p.Subscribed,
    p.Unsubscribed, p.Metrics, p.Aggregate, p.Insight,
)
#: Models that only appear nested in frames, and the body of an encrypted message.
PARTS: tuple[type[p.Frame], ...] = (p.EncryptedBody, p.Features)


def _dumped_required(model: type[BaseModel]) -> list[str]:
    return [name for name, f in model.model_fields.items()
            if f.is_required() or f.default is not None]


def protocol_schema() -> dict[str, Any]:
    """The document: every model under `$defs`, and the unions `ClientFrame`, `ServerFrame`."""
    Mode = Literal["validation", "serialization"]
    entries: list[tuple[type[BaseModel], Mode]] = [(m, "validation") for m in CLIENT_FRAMES]
    entries += [(m, "serialization") for m in SERVER_FRAMES]
    entries += [(m, "validation") for m in PARTS]
    _, top = models_json_schema(entries, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = top["$defs"]
    server_side: set[type[p.Frame]] = {*SERVER_FRAMES, p.Member}
    server_names = {m.__name__ for m in server_side}
    for model in server_side:
        defs[model.__name__]["required"] = _dumped_required(model)
    for model in (*CLIENT_FRAMES, *SERVER_FRAMES):
        defs[model.__name__]["required"] = sorted(
            {"type", *defs[model.__name__].get("required", [])},
            key=list(model.model_fields).index,
        )
    for name, schema in defs.items():
        for field in schema.get("properties", {}).values():
            field.pop("title", None)  # else generated TypeScript names a type per field
            nullable = field.get("anyOf", [])
            if name in server_names and {"type": "null"} in nullable:
                rest = [s for s in nullable if s != {"type": "null"}]  # absent, never null
                del field["anyOf"]
                field.pop("default", None)
                field.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    defs["ClientFrame"] = {"oneOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in CLIENT_FRAMES]}
    defs["ServerFrame"] = {"oneOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in SERVER_FRAMES]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://confide.invalid/protocol/v1.schema.json",
        "title": "ConfideFrame",
        "description": f"Confide wire protocol, subprotocol {p.SUBPROTOCOL}: every frame.",
        "oneOf": [{"$ref": "#/$defs/ClientFrame"}, {"$ref": "#/$defs/ServerFrame"}],
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(protocol_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
