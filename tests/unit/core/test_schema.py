"""docs/protocol.schema.json is the wire models' JSON Schema (the browser's types come from it)."""

from __future__ import annotations

import json
from pathlib import Path

from confide import protocol as p
from confide.schema import CLIENT_FRAMES, SERVER_FRAMES, protocol_schema, render

ROOT = Path(__file__).resolve().parents[3]


def test_committed_schema_matches_the_models() -> None:
    committed = (ROOT / "docs" / "protocol.schema.json").read_text()
    assert committed == render(), (
        "docs/protocol.schema.json is stale: python -m confide.schema > docs/protocol.schema.json"
        " && (cd web && npm run gen:types)"
    )


def test_every_frame_model_is_in_the_schema() -> None:
    defs = protocol_schema()["$defs"]
    frames = {m for m in vars(p).values()
              if isinstance(m, type) and issubclass(m, p.Frame) and "type" in m.model_fields}
    assert frames == set(CLIENT_FRAMES) | set(SERVER_FRAMES)
    for model in frames:
        assert defs[model.__name__]["required"][0] == "type"


def test_server_fields_are_required_unless_dump_leaves_them_out() -> None:
    defs = protocol_schema()["$defs"]
    assert defs["Ack"]["required"] == ["type", "id"]
    assert defs["Ack"]["properties"]["offset"] == {"type": "integer"}
    dumped = p.Ack(id="m1").dump()
    assert set(dumped) == set(defs["Ack"]["required"])
    notification = p.Notification(id="n", kind="k", title="t", body="b", created_at=1.0).dump()
    assert set(notification) == set(defs["Notification"]["required"])
    # a client frame keeps its defaults optional, as the server validates it
    assert defs["HistoryRequest"]["required"] == ["type"]


def test_schema_is_strict_json() -> None:
    json.loads(render(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
