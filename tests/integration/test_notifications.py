"""Notifications: REST producers, WebSocket inboxes, delivery tracking, durability."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import ray

from actors.directory import host_index, host_name
from tests.integration.conftest import Server
from tests.integration.wsclient import Raw


def is_note(f: dict[str, Any]) -> bool:
    return f.get("type") == "notification"


async def post(server: Server, token: str, body: dict[str, Any],
               key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as c:
        return await c.post("/api/notifications", json=body, headers=headers)


async def status(server: Server, token: str, nid: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as c:
        return await c.get(f"/api/notifications/{nid}",
                           headers={"Authorization": f"Bearer {token}"})


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def inbox(server: Server, who: str) -> tuple[Raw, dict[str, Any]]:
    return await Raw.open(server.ws("/ws/notifications"), server.token(who))


async def test_offline_delivery_in_order_and_state_tracking(server: Server) -> None:
    alice, svc = user(), server.token("billing", "service")
    ids = []
    for i in range(5):
        r = await post(server, svc, {"user": alice, "kind": "reminder", "title": f"t{i}",
                                     "body": f"b{i}", "data": {"i": i}})
        assert r.status_code == 202 and r.json()["state"] == "queued"
        ids.append(r.json()["id"])
    st = (await status(server, svc, ids[0])).json()
    assert st["state"] == "queued" and st["attempts"] == 0 and st["sent_at"] is None
    raw, welcome = await inbox(server, alice)
    assert welcome["pending"] == 5 and welcome["unread"] == 5
    got = await raw.collect(is_note, 5)
    assert [n["id"] for n in got] == ids and got[2]["data"] == {"i": 2}
    st = (await status(server, svc, ids[0])).json()
    assert st["state"] == "sent" and st["attempts"] == 1 and st["sent_at"] is not None
    await raw.send({"type": "ack", "id": ids[0], "state": "delivered"})
    await raw.send({"type": "ack", "id": ids[0], "state": "read"})
    await raw.send({"type": "list", "state": "all", "limit": 10})
    listed = await raw.until(lambda f: f["type"] == "notifications")
    assert [n["id"] for n in listed["items"]] == ids[::-1]  # newest first
    assert {n["id"]: n["state"] for n in listed["items"]}[ids[0]] == "read"
    st = (await status(server, server.token(alice), ids[0])).json()  # the recipient may look
    assert st["state"] == "read"
    assert st["sent_at"] <= st["delivered_at"] <= st["read_at"]
    # an unacked one is sent again on the next connection; an acked one is not
    await raw.close()
    raw2, welcome2 = await inbox(server, alice)
    assert welcome2["pending"] == 4
    again = await raw2.collect(is_note, 4)
    assert [n["id"] for n in again] == ids[1:]
    assert (await status(server, svc, ids[1])).json()["attempts"] == 2
    await raw2.close()


async def test_every_connection_gets_live_ones(server: Server) -> None:
    bob = user()
    tab1, _ = await inbox(server, bob)
    tab2, _ = await inbox(server, bob)
    r = await post(server, server.token("dr", "therapist"),
                   {"user": bob, "kind": "msg", "title": "hi", "body": "live"})
    nid = r.json()["id"]
    n1, n2 = await asyncio.gather(tab1.until(is_note), tab2.until(is_note))
    assert n1["id"] == n2["id"] == nid
    await asyncio.gather(tab1.close(), tab2.close())


async def test_rest_authorization_validation_and_idempotency(server: Server) -> None:
    carol = user()
    r = await post(server, server.token("mallory"), {"user": carol, "kind": "k", "title": "t",
                                                      "body": "b"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    async with httpx.AsyncClient(base_url=server.http) as c:
        r = await c.post("/api/notifications", json={"user": carol})
    assert r.status_code == 401
    svc = server.token("svc", "service")
    r = await post(server, svc, {"user": carol, "title": 5})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_message"
    assert "kind" in r.json()["error"]["message"]
    body = {"user": carol, "kind": "k", "title": "once", "body": "b"}
    first = await post(server, svc, body, key="abc-1")
    retry = await post(server, svc, body, key="abc-1")
    assert first.status_code == retry.status_code == 202
    assert first.json() == retry.json()
    raw, welcome = await inbox(server, carol)
    assert welcome["pending"] == 1
    await raw.close()
    nid = first.json()["id"]
    assert (await status(server, server.token("stranger"), nid)).status_code == 404
    assert (await status(server, svc, "no-such-id")).status_code == 404
    # service tokens may not open WebSockets
    from websockets.asyncio.client import connect
    async with connect(server.ws("/ws/notifications")) as ws:
        import json
        await ws.send(json.dumps({"type": "hello", "token": svc}))
        assert await Raw(ws).closed_with() == 4403


async def test_notifications_survive_host_kill_and_restart(recoverable: Server) -> None:
    fresh = recoverable
    dave, svc = user(), fresh.token("svc", "service")
    first = (await post(fresh, svc, {"user": dave, "kind": "k", "title": "1", "body": "x"})).json()
    idx = host_index(f"inbox:{dave}", fresh.settings.hosts)
    ray.kill(ray.get_actor(host_name(idx), namespace=fresh.settings.ray_namespace),
             no_restart=False)
    second = await post(fresh, svc, {"user": dave, "kind": "k", "title": "2", "body": "y"})
    assert second.status_code == 202
    fresh.stop()
    fresh.deploy()
    raw, welcome = await inbox(fresh, dave)
    assert welcome["pending"] == 2
    got = await raw.collect(is_note, 2)
    assert [n["id"] for n in got] == [first["id"], second.json()["id"]]
    await raw.close()
