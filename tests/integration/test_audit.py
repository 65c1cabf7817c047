"""The audit trail on a live server: every listed action leaves exactly one record, refused
authorizations are recorded, and only admins may read it (PROTOCOL 1.1, "Audit trail")."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from fhe.client import KeySet, generate_keys
from tests.integration.conftest import Server, make_settings
from tests.integration.wsclient import Raw

Event = tuple[str, str, str, str]  # actor, action, target, outcome


@pytest.fixture(scope="module")
def server(serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared fixture's server, but accepting the small `test` preset's keys (below
    128-bit security, refused by default)."""
    srv = Server(make_settings(tmp_path_factory.mktemp("audit"),
                               fhe_min_security="HEStd_NotSet"), serve_port)
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return generate_keys("test")


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def get_audit(server: Server, token: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as c:
        return await c.get("/api/audit", params=params,
                           headers={"Authorization": f"Bearer {token}"})


async def trail(server: Server, expected: list[Event], **params: Any) -> list[Event]:
    """The events matching `params`, once all of `expected` are there (written in batches
    about every second: wait for them, then look at all of them)."""
    admin = server.token(name("auditor"), "admin")
    deadline = time.monotonic() + 20
    while True:
        r = await get_audit(server, admin, limit=1000, **params)
        assert r.status_code == 200
        found = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in r.json()["events"]]
        if not Counter(expected) - Counter(found):
            return found
        assert time.monotonic() < deadline, f"missing: {Counter(expected) - Counter(found)}"
        await asyncio.sleep(0.2)


async def rest(server: Server, method: str, path: str, token: str | None,
               body: dict[str, Any] | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.http, timeout=60) as c:
        return await c.request(method, path, json=body, headers=headers)


async def refused(server: Server, path: str, token: str) -> int:
    """The close code of a connection whose `hello` carries `token`."""
    async with connect(server.ws(path)) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        return await Raw(ws).closed_with()


async def test_every_listed_action_leaves_exactly_one_record(
    server: Server, keys: KeySet,
) -> None:
    sid, alice, tina = name("s"), name("alice"), name("tina")
    # who joined and left which session, who ended it
    a, _ = await Raw.open(server.ws(f"/ws/chat/{sid}"), server.token(alice, sessions=[sid]))
    t, _ = await Raw.open(server.ws(f"/ws/chat/{sid}"),
                          server.token(tina, "therapist", sessions=[sid]))
    await a.send({"type": "message", "id": "m1", "body": {"text": "private"}})
    await a.until(lambda f: f["type"] == "ack")
    await a.close()
    await t.until(lambda f: f.get("type") == "presence" and f["event"] == "leave")
    await t.send({"type": "end"})
    assert await t.closed_with() == 4410
    expected = [(alice, "session.join", sid, "ok"), (tina, "session.join", sid, "ok"),
                (alice, "session.leave", sid, "ok"), (tina, "session.end", sid, "ok"),
                (tina, "session.leave", sid, "ok")]
    found = await trail(server, expected, session=sid)
    assert Counter(found) == Counter(expected)
    assert all("private" not in str(e) for e in found)  # no bodies

    # who read which notification
    bob = name("bob")
    posted = await rest(server, "POST", "/api/notifications", server.token("billing", "service"),
                        {"user": bob, "kind": "reminder", "title": "t", "body": "secret"})
    nid = posted.json()["id"]
    inbox, _ = await Raw.open(server.ws("/ws/notifications"), server.token(bob))
    await inbox.until(lambda f: f.get("type") == "notification")
    await inbox.send({"type": "ack", "id": nid, "state": "delivered"})
    await inbox.send({"type": "ack", "id": nid, "state": "read"})
    await inbox.send({"type": "ack", "id": nid, "state": "read"})  # again: no second record
    await inbox.send({"type": "list", "state": "all"})
    await inbox.until(lambda f: f.get("type") == "notifications")
    await inbox.close()
    assert Counter(await trail(server, [(bob, "notification.read", nid, "ok")], user=bob)) == \
        Counter([(bob, "notification.read", nid, "ok")])

    # who registered, fetched or deleted which key
    owner, reader = name("dr"), name("reader")
    reg = await rest(server, "POST", "/api/fhe/keys", server.token(owner, "therapist"),
                     keys.bundle.to_json())
    assert reg.status_code == 201
    key_id = reg.json()["key_id"]
    assert (await rest(server, "GET", f"/api/fhe/keys/{key_id}",
                       server.token(reader))).status_code == 200
    assert (await rest(server, "DELETE", f"/api/fhe/keys/{key_id}",
                       server.token(owner, "therapist"))).status_code == 204
    want_owner = [(owner, "key.register", key_id, "ok"), (owner, "key.delete", key_id, "ok")]
    assert Counter(await trail(server, want_owner, user=owner)) == Counter(want_owner)
    want_reader = [(reader, "key.fetch", key_id, "ok")]
    assert await trail(server, want_reader, user=reader) == want_reader


async def test_refused_authorizations_are_recorded(server: Server, keys: KeySet) -> None:
    sid, mallory, alice = name("s"), name("mallory"), name("alice")
    # a chat session not in the token: 4403
    assert await refused(server, f"/ws/chat/{sid}", server.token(mallory, sessions=["x"])) == 4403
    # a bad token: 4401, by nobody known
    assert await refused(server, f"/ws/chat/{sid}", "not-a-jwt") == 4401
    # a client may not end the session: a `forbidden` error, the connection stays
    a, _ = await Raw.open(server.ws(f"/ws/chat/{sid}"), server.token(alice, sessions=[sid]))
    await a.send({"type": "end"})
    assert (await a.until(lambda f: f["type"] == "error"))["code"] == "forbidden"
    await a.close()
    expected = [(mallory, "session.join", sid, "denied"),
                ("-", "connect", sid, "unauthenticated"),
                (alice, "session.end", sid, "denied")]
    found = await trail(server, [*expected, (alice, "session.leave", sid, "ok")], session=sid)
    assert Counter(e for e in found if e[3] != "ok") == Counter(expected)

    # REST: someone else's key, a service token on a WebSocket, the audit trail itself
    owner, eve, svc = name("dr"), name("eve"), name("svc")
    reg = await rest(server, "POST", "/api/fhe/keys", server.token(owner, "therapist"),
                     keys.bundle.to_json())
    key_id = reg.json()["key_id"]
    assert (await rest(server, "DELETE", f"/api/fhe/keys/{key_id}",
                       server.token(eve))).status_code == 403
    assert (await get_audit(server, server.token(eve))).status_code == 403
    assert await refused(server, "/ws/notifications", server.token(svc, "service")) == 4403
    want_eve = [(eve, "key.delete", key_id, "denied"), (eve, "audit.read", "audit", "denied")]
    assert Counter(await trail(server, want_eve, user=eve)) == Counter(want_eve)
    want_svc = [(svc, "connect", "/ws/notifications", "denied")]
    assert await trail(server, want_svc, user=svc) == want_svc


@pytest.mark.parametrize("role", ["client", "therapist", "service"])
async def test_non_admins_get_403(server: Server, role: str) -> None:
    r = await get_audit(server, server.token(name(role), role))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_admin_query_shape_and_bad_queries(server: Server) -> None:
    admin = server.token(name("root"), "admin")
    assert (await get_audit(server, "not-a-jwt")).status_code == 401
    r = await get_audit(server, admin, limit=5, since=0)
    assert r.status_code == 200
    events = r.json()["events"]
    assert len(events) <= 5
    assert all(set(e) == {"ts", "actor", "action", "target", "outcome"} for e in events)
    assert [e["ts"] for e in events] == sorted((e["ts"] for e in events), reverse=True)
    for bad in ({"limit": 0}, {"limit": 5000}, {"limit": "many"}, {"since": "nan"}):
        r = await get_audit(server, admin, **bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_message", bad
