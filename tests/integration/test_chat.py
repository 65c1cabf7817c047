"""Chat over a real Serve app, real host actors and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import uuid

from tests.integration.conftest import Server
from tests.integration.wsclient import Raw, is_msg


def sid() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


async def join(server: Server, session: str, user: str, role: str = "client",
               **kw: object) -> tuple[Raw, dict[str, object]]:
    token = server.token(user, role, sessions=[session])
    return await Raw.open(server.ws(f"/ws/chat/{session}"), token, **kw)  # type: ignore[arg-type]


async def test_welcome_fields_and_subprotocol(server: Server) -> None:
    s = sid()
    raw, welcome = await join(server, s, "alice", subprotocols=["confide.v1"])
    assert raw.ws.subprotocol == "confide.v1"
    assert welcome["type"] == "welcome" and welcome["user"] == "alice"
    assert welcome["session_id"] == s and welcome["offset"] == 0
    assert welcome["recovered"] is True and welcome["heartbeat_s"] > 0
    assert welcome["members"] == [{"user": "alice", "role": "client", "status": "online"}]
    await raw.send({"type": "ping", "id": 7})
    assert await raw.until(lambda f: f["type"] == "pong") == {"type": "pong", "id": 7}
    await raw.close()


async def test_token_in_upgrade_header(server: Server) -> None:
    s = sid()
    raw, welcome = await join(server, s, "bob", header=True)
    assert welcome["user"] == "bob"
    await raw.close()


async def test_three_clients_sixty_messages_same_order(server: Server) -> None:
    s = sid()
    clients = [(await join(server, s, u))[0] for u in ("ann", "ben", "cat")]

    async def send_all(raw: Raw, name: str) -> None:
        for i in range(20):
            await raw.send({"type": "message", "id": f"{name}-{i}", "body": {"n": i}})

    names = ("ann", "ben", "cat")
    await asyncio.gather(*(send_all(c, n) for c, n in zip(clients, names, strict=True)))
    seen = await asyncio.gather(*(c.collect(is_msg, 60) for c in clients))
    for c in clients:  # acks and broadcasts interleave: wait for the remaining acks too
        missing = 20 - sum(1 for f in c.seen if f["type"] == "ack")
        if missing:
            await c.collect(lambda f: f["type"] == "ack", missing)
    orders = [[(m["offset"], m["sender"], m["id"]) for m in msgs] for msgs in seen]
    assert orders[0] == orders[1] == orders[2]
    assert [o for o, _, _ in orders[0]] == list(range(1, 61))
    # each sender's own messages stay in the order it sent them
    for name in ("ann", "ben", "cat"):
        assert [i for _, s_, i in orders[0] if s_ == name] == [f"{name}-{i}" for i in range(20)]
    # acks match the offsets everyone saw
    by_id = {i: o for o, _, i in orders[0]}
    for c in clients:
        acks = [f for f in c.seen if f["type"] == "ack"]
        assert len(acks) == 20
        assert all(by_id[a["id"]] == a["offset"] for a in acks)
    for c in clients:
        await c.close()


async def test_resend_same_id_same_ack_no_second_broadcast(server: Server) -> None:
    s = sid()
    a, _ = await join(server, s, "alice")
    b, _ = await join(server, s, "bob")
    frame = {"type": "message", "id": "dup-1", "body": {"text": "hello"}}
    await a.send(frame)
    ack1 = await a.until(lambda f: f["type"] == "ack")
    await a.send(frame)
    ack2 = await a.until(lambda f: f["type"] == "ack")
    assert ack1 == ack2 == {"type": "ack", "id": "dup-1", "offset": 1}
    await a.send({"type": "message", "id": "next", "body": {"text": "after"}})
    msgs = await b.collect(is_msg, 2)
    assert [m["id"] for m in msgs] == ["dup-1", "next"]
    assert [m["offset"] for m in msgs] == [1, 2]
    await a.close()
    await b.close()


async def test_resume_replays_exactly_what_was_missed(server: Server) -> None:
    s = sid()
    a, _ = await join(server, s, "alice")
    b, _ = await join(server, s, "bob")
    for i in range(5):
        await a.send({"type": "message", "id": f"m{i}", "body": {"n": i}})
    got = await b.collect(is_msg, 5)
    epoch, last = got[-1]["epoch"], got[2]["offset"]  # pretend bob saw only the first 3
    await b.ws.close()  # dropped
    for i in range(5, 8):
        await a.send({"type": "message", "id": f"m{i}", "body": {"n": i}})
    await a.collect(lambda f: f["type"] == "ack", 8)
    b2, welcome = await join(server, s, "bob", resume={"offset": last, "epoch": epoch})
    assert welcome["recovered"] is True and welcome["offset"] == 8
    replay = await b2.collect(is_msg, 5)
    assert [m["offset"] for m in replay] == [4, 5, 6, 7, 8]
    await a.send({"type": "message", "id": "live", "body": {}})
    live = await b2.until(is_msg)
    assert live["offset"] == 9 and live["id"] == "live"
    # a foreign epoch is not recovered and replays nothing
    b3, w3 = await join(server, s, "bob", resume={"offset": 2, "epoch": "other"})
    assert w3["recovered"] is False
    await a.send({"type": "message", "id": "live2", "body": {}})
    assert (await b3.until(is_msg))["offset"] == 10
    for c in (a, b2, b3):
        await c.close()


async def test_history_pages_oldest_first(server: Server) -> None:
    s = sid()
    a, _ = await join(server, s, "alice")
    for i in range(7):
        await a.send({"type": "message", "id": f"h{i}", "body": {"n": i}})
    await a.collect(lambda f: f["type"] == "ack", 7)
    await a.send({"type": "history", "limit": 3})
    page = await a.until(lambda f: f["type"] == "history")
    assert [m["offset"] for m in page["messages"]] == [5, 6, 7] and page["complete"] is False
    await a.send({"type": "history", "before": 5, "limit": 10})
    page = await a.until(lambda f: f["type"] == "history")
    assert [m["offset"] for m in page["messages"]] == [1, 2, 3, 4] and page["complete"] is True
    await a.close()


async def test_presence_status_and_end(server: Server) -> None:
    s = sid()
    t, _ = await join(server, s, "dr", role="therapist")
    c, welcome = await join(server, s, "pat")
    assert {m["user"] for m in welcome["members"]} == {"dr", "pat"}
    joined = await t.until(lambda f: f["type"] == "presence" and f["user"] == "pat")
    assert joined["event"] == "join"
    await c.send({"type": "status", "status": "typing"})
    st = await t.until(lambda f: f["type"] == "status")
    assert st["user"] == "pat" and st["status"] == "typing"
    await c.send({"type": "end"})
    err = await c.until(lambda f: f["type"] == "error")
    assert err["code"] == "forbidden"
    await t.send({"type": "end"})
    ended = await c.until(lambda f: f["type"] == "ended")
    assert ended["by"] == "dr"
    assert await c.closed_with() == 4410
    assert await t.closed_with() == 4410
    late, _ = None, None
    from websockets.asyncio.client import connect

    async with connect(server.ws(f"/ws/chat/{s}")) as ws:
        await ws.send(json.dumps({"type": "hello", "token": server.token("pat", sessions=[s])}))
        late = Raw(ws)
        assert await late.closed_with() == 4410


async def test_leave_is_announced(server: Server) -> None:
    s = sid()
    a, _ = await join(server, s, "alice")
    b, _ = await join(server, s, "bob")
    await b.close()
    left = await a.until(lambda f: f["type"] == "presence" and f["event"] == "leave")
    assert left["user"] == "bob" and [m["user"] for m in left["members"]] == ["alice"]
    await a.close()
