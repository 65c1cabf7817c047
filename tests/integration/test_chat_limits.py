"""Bad input gets the right error frame or close code, and nobody else is disturbed."""

from __future__ import annotations

import asyncio
import json
import uuid

from websockets.asyncio.client import connect

from confide.auth import mint_token
from tests.integration.conftest import SECRET, Server
from tests.integration.wsclient import Raw, is_msg


async def close_code_after(server: Server, path: str, first: str | None) -> int:
    async with connect(server.ws(path), max_size=2**24) as ws:
        if first is not None:
            await ws.send(first)
        return await Raw(ws).closed_with()


def hello(token: str) -> str:
    return json.dumps({"type": "hello", "token": token})


async def test_handshake_failures(server: Server) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    path = f"/ws/chat/{s}"
    expired = mint_token(SECRET, "alice", sessions=[s], ttl_s=-120)  # past the 30 s leeway
    forged = mint_token("another-secret-of-sufficient-length!", "alice", sessions=[s])
    assert await close_code_after(server, path, hello(expired)) == 4401
    assert await close_code_after(server, path, hello(forged)) == 4401
    assert await close_code_after(server, path, hello("not-a-jwt")) == 4401
    assert await close_code_after(server, path, json.dumps({"type": "hello"})) == 4401
    other = server.token("alice", sessions=["elsewhere"])
    assert await close_code_after(server, path, hello(other)) == 4403
    ping = json.dumps({"type": "ping"})
    assert await close_code_after(server, path, ping) == 4400
    assert await close_code_after(server, path, "{not json") == 4400
    # no hello within hello_timeout_s (2 s in the test settings)
    assert await close_code_after(server, path, None) == 4408


async def test_bad_frames_get_error_frames_and_keep_the_connection(server: Server) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    raw, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("al", sessions=[s]))
    await raw.send({"type": "teleport", "id": "x1"})
    err = await raw.until(lambda f: f["type"] == "error")
    assert err["code"] == "unknown_type" and err["id"] == "x1"
    await raw.ws.send("{broken")
    err = await raw.until(lambda f: f["type"] == "error")
    assert err["code"] == "invalid_message"
    await raw.send({"type": "message", "id": "m", "body": "a string, not an object"})
    err = await raw.until(lambda f: f["type"] == "error")
    assert err["code"] == "invalid_message" and err["id"] == "m"
    assert "a string" not in err["message"]  # never echo bodies
    await raw.send({"type": "message", "id": "e", "body": {"x": 1}, "encrypted": True})
    err = await raw.until(lambda f: f["type"] == "error")
    assert err["code"] == "invalid_message"
    await raw.send({"type": "message", "id": "f1", "body": {
        "features": {"key_id": "k", "ciphertext": "AAAA"}}})
    err = await raw.until(lambda f: f["type"] == "error")  # raised on the host
    assert err["code"] == "invalid_message" and err["id"] == "f1"
    await raw.send({"type": "message", "id": "ok", "body": {"t": "fine"}})
    ack = await raw.until(lambda f: f["type"] == "ack")
    assert ack == {"type": "ack", "id": "ok", "offset": 1}
    await raw.close()


async def test_oversized_frame_closes_1009_others_keep_chatting(server: Server) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    big, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("big", sessions=[s]))
    a, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("a", sessions=[s]))
    b, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("b", sessions=[s]))
    await big.send({"type": "message", "id": "huge", "body": {"t": "x" * 70_000}})
    assert await big.closed_with() == 1009
    await a.send({"type": "message", "id": "after", "body": {"t": "still here"}})
    got = await b.until(is_msg)
    assert got["id"] == "after" and got["offset"] == 1  # the huge one was never stored
    await a.close()
    await b.close()


async def test_flood_is_rate_limited_without_losing_accepted_messages(server: Server) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    raw, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("fl", sessions=[s]))
    watcher, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("w", sessions=[s]))
    for i in range(100):
        await raw.send({"type": "message", "id": f"f{i}", "body": {"n": i}})

    def counted(f: dict[str, object]) -> bool:
        return f["type"] in ("ack", "error")

    answers = await raw.collect(counted, 100, timeout=30)
    limited = [f for f in answers if f["type"] == "error"]
    acked = [f for f in answers if f["type"] == "ack"]
    assert limited and all(f["code"] == "rate_limited" for f in limited)
    assert all(str(f["id"]).startswith("f") for f in limited)
    assert len(acked) >= 40  # the burst at least
    # everything acked was broadcast, in order, to the others
    msgs = await watcher.collect(is_msg, len(acked))
    assert [m["id"] for m in msgs] == [a["id"] for a in sorted(acked, key=lambda a: a["offset"])]
    await asyncio.gather(raw.close(), watcher.close())
