"""Wire-path hardening (issue 9): strict JSON, early REST body limits, bounded inflation."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from confide import strictjson
from tests.integration.conftest import Server
from tests.integration.wsclient import TIMEOUT, Raw, is_msg

LITERALS = ["NaN", "Infinity", "-Infinity", "1e400"]

#: Every client frame type of every endpoint, with a slot where a number goes (`@N@`).
FRAMES: dict[str, list[str]] = {
    "chat": [
        '{"type":"message","id":"p1","body":{"v":@N@}}',
        '{"type":"message","id":"p2","body":{"a":[1,{"b":@N@}]},"encrypted":false}',
        '{"type":"status","status":"online","x":@N@}',
        '{"type":"history","limit":@N@}',
        '{"type":"end","x":@N@}',
        '{"type":"ping","id":@N@}',
    ],
    "notifications": [
        '{"type":"ack","id":"n1","state":"read","x":@N@}',
        '{"type":"list","limit":@N@}',
        '{"type":"ping","id":"p","x":[@N@]}',
    ],
    "analytics": [
        '{"type":"subscribe","stream":"system","x":@N@}',
        '{"type":"unsubscribe","stream":"system","x":@N@}',
        '{"type":"submit","id":"s1","stream":"fhe:x","key_id":"k","ciphertext":"AA","n":@N@}',
        '{"type":"ping","x":@N@}',
    ],
}


def session() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


def strict(text: str | bytes) -> dict[str, Any]:
    """A frame as a browser's JSON.parse would take it (strict), or the test fails."""
    value = strictjson.loads(text)
    assert isinstance(value, dict)
    return value


async def strict_recv(ws: Any, pred: Any) -> dict[str, Any]:
    async def loop() -> dict[str, Any]:
        while True:
            frame = strict(await ws.recv())
            if pred(frame):
                return frame
    return await asyncio.wait_for(loop(), TIMEOUT)


@pytest.mark.parametrize("literal", LITERALS)
async def test_non_finite_numbers_are_refused_on_every_ws_endpoint(
    server: Server, literal: str
) -> None:
    s = session()
    paths = {"chat": f"/ws/chat/{s}", "notifications": "/ws/notifications",
             "analytics": "/ws/analytics"}
    bystander, _ = await Raw.open(server.ws(paths["chat"]), server.token("by", sessions=[s]))
    for endpoint, frames in FRAMES.items():
        raw, _ = await Raw.open(server.ws(paths[endpoint]),
                                server.token("poisoner", "therapist", sessions=[s]))
        for template in frames:
            await raw.ws.send(template.replace("@N@", literal))
            err = await raw.until(lambda f: f["type"] in ("error", "ack", "pong", "ended"))
            assert (err["type"], err["code"]) == ("error", "invalid_message"), template
        await raw.send({"type": "ping", "id": "still-open"})
        assert (await raw.until(lambda f: f["type"] == "pong"))["id"] == "still-open"
        await raw.close()
    # nothing was stored or forwarded: the first message the bystander sees is this one
    writer, _ = await Raw.open(server.ws(paths["chat"]), server.token("w", sessions=[s]))
    await writer.send({"type": "message", "id": "ok", "body": {"v": 1.5}})
    got = await bystander.until(is_msg)
    assert (got["id"], got["offset"], got["body"]) == ("ok", 1, {"v": 1.5})
    await asyncio.gather(writer.close(), bystander.close())


@pytest.mark.parametrize("literal", LITERALS)
async def test_non_finite_numbers_are_refused_on_every_rest_body(
    server: Server, literal: str
) -> None:
    s = session()
    calls = [
        ("POST", "/api/notifications", server.token("svc", "service"),
         '{"user":"u1","kind":"k","title":"t","body":"b","data":{"v":@N@}}'),
        ("POST", "/api/notifications", server.token("svc", "service"),
         '{"user":"u1","kind":"k","title":"t","body":"b","ttl_s":@N@}'),
        ("POST", "/api/fhe/keys", server.token("t1", "therapist"),
         '{"context":"AA","public_key":"AA","eval_mult_key":"AA","label":@N@}'),
        ("PUT", f"/api/sessions/{s}/fhe", server.token("t1", "therapist", sessions=[s]),
         '{"key_id":"k","model":{"weights":[@N@],"bias":0}}'),
    ]
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as c:
        for method, path, token, template in calls:
            r = await c.request(method, path, content=template.replace("@N@", literal),
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "application/json"})
            assert r.status_code == 400, (path, r.text)
            assert strict(r.content)["error"]["code"] == "invalid_message"


async def test_old_poisoned_rows_are_served_as_valid_json(server: Server) -> None:
    """A row written by the old server (Infinity in a body) reaches nobody as non-JSON."""
    s = session()
    token = server.token("old", sessions=[s])
    raw, welcome = await Raw.open(server.ws(f"/ws/chat/{s}"), token)
    await raw.send({"type": "message", "id": "m1", "body": {"v": 1, "t": "kept"}})
    await raw.until(lambda f: f["type"] == "ack")
    await raw.close()
    svc = server.token("svc", "service")
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as c:
        r = await c.post("/api/notifications", headers={"Authorization": f"Bearer {svc}"},
                         json={"user": "old-reader", "kind": "k", "title": "t", "body": "b"})
        assert r.status_code == 202
    db = sqlite3.connect(server.settings.data_dir / "confide.db")
    with db:  # what the old code wrote for 1e400 and NaN
        db.execute("UPDATE messages SET body = ? WHERE session_id = ?",
                   ('{"v":Infinity,"w":[NaN,-Infinity],"t":"kept"}', s))
        db.execute("UPDATE notifications SET data = ? WHERE id = ?", ('{"x":NaN}', r.json()["id"]))
    db.close()
    expected = {"v": None, "w": [None, None], "t": "kept"}
    async with connect(server.ws(f"/ws/chat/{s}")) as ws:  # resume: replayed from the store
        await ws.send(json.dumps({"type": "hello", "token": token,
                                  "resume": {"offset": 0, "epoch": welcome["epoch"]}}))
        replayed = await strict_recv(ws, lambda f: f["type"] == "message")
        assert replayed["body"] == expected
        await ws.send(json.dumps({"type": "history"}))
        history = await strict_recv(ws, lambda f: f["type"] == "history")
        assert [m["body"] for m in history["messages"]] == [expected]
    async with connect(server.ws("/ws/notifications")) as ws:
        await ws.send(json.dumps({"type": "hello", "token": server.token("old-reader")}))
        note = await strict_recv(ws, lambda f: f["type"] == "notification")
        assert note["data"] == {"x": None}


# ------------------------------------------------------------------ early body limits


async def _http(server: Server, head: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status = int(head.split(b" ", 2)[1])
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
    length = int(headers.get(b"content-length", b"0"))
    body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT) if length else b"{}"
    return status, strict(body)


@pytest.mark.parametrize("path", ["/api/fhe/keys", "/api/notifications"])
async def test_declared_length_over_the_limit_is_refused_before_the_body(
    server: Server, path: str
) -> None:
    token = server.token("big", "service")
    reader, writer = await _http(server, (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n"))
    status, body = await _response(reader)  # no byte of the body was sent
    assert status == 413 and body["error"]["code"] == "too_large"
    writer.close()


async def test_streamed_body_over_the_limit_is_refused_before_its_end(server: Server) -> None:
    token = server.token("big", "service")
    reader, writer = await _http(server, (
        f"POST /api/notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"))
    chunk = b"x" * 65536
    for _ in range(5):  # 320 KiB, over the 256 KiB limit; the body never ends
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
    status, body = await _response(reader)
    assert status == 413 and body["error"]["code"] == "too_large"
    writer.close()


async def test_bodies_under_the_limit_still_work(server: Server) -> None:
    svc = server.token("svc", "service")
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as c:
        r = await c.post("/api/notifications", headers={"Authorization": f"Bearer {svc}"},
                         json={"user": "u2", "kind": "k", "title": "t", "body": "b",
                               "data": {"blob": "b" * 200_000}})
        assert r.status_code == 202


# ------------------------------------------------------------ compressed WebSocket frames


async def test_compressed_frame_inflating_past_the_limit_closes_1009_while_inflating(
    server: Server
) -> None:
    s = session()
    async with connect(server.ws(f"/ws/chat/{s}"), compression="deflate") as ws:
        assert ws.protocol.extensions, "the server offers permessage-deflate"
        await ws.send(json.dumps({"type": "hello", "token": server.token("z", sessions=[s])}))
        strict(await ws.recv())
        # 1 MB of one letter: a few KB on the wire, 16 times the 64 KiB chat limit inflated
        await ws.send(json.dumps({"type": "message", "id": "z", "body": {"t": "x" * 10**6}}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # a presence frame may come first
                strict(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # stopped by the decompressor at the limit, not by the gateway's check after inflating
    # the whole frame (whose reason is "frame too large")
    assert closed.value.rcvd.reason != "frame too large"


async def test_compressed_hello_inflating_past_the_limit_closes_1009(server: Server) -> None:
    async with connect(server.ws("/ws/notifications"), compression="deflate") as ws:
        await ws.send(json.dumps({"type": "hello", "client": "y" * 10**6}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert closed.value.rcvd.reason != "frame too large"


# ------------------------------------------------------------------ bytes, not items


async def test_history_replies_are_paged_under_the_byte_budget(server: Server) -> None:
    s = session()
    raw, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("h", sessions=[s]))
    for i in range(24):  # 24 messages of 60 KB: 1.4 MB, over the 1 MiB reply budget
        await raw.send({"type": "message", "id": f"h{i}", "body": {"t": str(i % 10) * 60_000}})
        await raw.until(lambda f: f["type"] == "ack")
    await raw.send({"type": "history", "limit": 500})
    reply = await raw.until(lambda f: f["type"] == "history")
    offsets = [m["offset"] for m in reply["messages"]]
    assert reply["complete"] is False and offsets[-1] == 24 and len(offsets) < 24
    assert len(json.dumps(reply, separators=(",", ":"))) <= 2**20
    await raw.send({"type": "history", "before": offsets[0], "limit": 500})
    rest = await raw.until(lambda f: f["type"] == "history")
    assert [m["offset"] for m in rest["messages"]] == list(range(1, offsets[0]))
    assert rest["complete"] is True
    await raw.close()


async def test_status_floods_are_coalesced_latest_wins(server: Server) -> None:
    s = session()
    flood, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("fl", sessions=[s]))
    watch, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("wa", sessions=[s]))
    sent = ["typing", "idle"] * 9 + ["away"]
    for status in sent:
        await flood.send({"type": "status", "status": status})
    got: list[str] = []

    def latest(f: dict[str, Any]) -> bool:
        if f["type"] == "status" and f["user"] == "fl":
            got.append(f["status"])
        return bool(got) and got[-1] == "away"

    await watch.until(latest)
    assert got[0] == "typing" and got[-1] == "away" and len(got) < len(sent)
    await asyncio.gather(flood.close(), watch.close())
