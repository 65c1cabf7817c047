"""The Python SDK against the real server: reconnect, resume, outbox, inbox, streams."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from confide.client import AnalyticsClient, ChatClient, NotificationsClient
from tests.integration.conftest import Server


async def messages(client: ChatClient, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        out.append(await client.next_event("message", timeout=timeout))
    return out


async def test_chat_client_resumes_after_a_drop_without_gap_or_duplicate(
    server: Server,
) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    url = server.ws(f"/ws/chat/{s}")
    alice = ChatClient(url, server.token("alice", sessions=[s]), base_backoff_s=0.05)
    bob = ChatClient(url, server.token("bob", sessions=[s]), base_backoff_s=0.05)
    await alice.connect(timeout=30)
    await bob.connect(timeout=30)
    for i in range(3):
        await alice.wait_acked(await alice.send_message({"n": i}), timeout=30)
    assert [m["offset"] for m in await messages(bob, 3)] == [1, 2, 3]
    # bob's connection drops abruptly; alice keeps talking; bob queues one meanwhile
    ws = bob._ws  # type: ignore[attr-defined]
    assert ws is not None
    ws.transport.abort()
    queued = await bob.send_message({"from": "bob, while offline"})
    for i in range(3, 6):
        await alice.wait_acked(await alice.send_message({"n": i}), timeout=30)
    await bob.wait_acked(queued, timeout=30)
    got = await messages(bob, 4)
    assert [m["offset"] for m in got] == [4, 5, 6, 7]
    assert sum(1 for m in got if m["sender"] == "bob") == 1
    assert bob.last_offset == 7
    with_alice = await messages(alice, 7)
    assert [m["offset"] for m in with_alice] == list(range(1, 8))
    await asyncio.gather(alice.disconnect(), bob.disconnect())


async def test_notifications_client_auto_acks(server: Server) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    svc = server.token("svc", "service")
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as c:
        r = await c.post("/api/notifications", headers={"Authorization": f"Bearer {svc}"},
                         json={"user": user, "kind": "k", "title": "t", "body": "b"})
        nid = r.json()["id"]
        inbox = NotificationsClient(server.ws("/ws/notifications"), server.token(user))
        await inbox.connect(timeout=30)
        note = await inbox.next_event("notification", timeout=30)
        assert note["id"] == nid
        await inbox.mark_read(nid)

        async def state() -> str:
            got = await c.get(f"/api/notifications/{nid}",
                              headers={"Authorization": f"Bearer {svc}"})
            return str(got.json()["state"])

        async def until_read() -> None:
            while await state() != "read":
                await asyncio.sleep(0.1)

        await asyncio.wait_for(until_read(), 30)
        items = await inbox.list(state="all")
        assert [i["id"] for i in items] == [nid] and items[0]["state"] == "read"
        await inbox.disconnect()


async def test_analytics_client_subscription(server: Server) -> None:
    admin = AnalyticsClient(server.ws("/ws/analytics"), server.token("root", "admin"))
    await admin.connect(timeout=30)
    sub = await admin.subscribe("system")
    first = await asyncio.wait_for(sub.next(), 30)
    assert first["type"] == "metrics" and "connections" in first["data"]
    await admin.disconnect()
