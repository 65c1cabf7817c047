"""Failures: a killed host actor, a full server restart (over SQLite and PostgreSQL), silent
and abusive clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from actors.directory import host_index, host_name
from confide.store import open_store
from tests.integration.conftest import Server, make_settings
from tests.integration.wsclient import Raw, is_msg
from tests.pgserver import PgServer, fresh_schema


@pytest.fixture
def strict(serve_port: int, tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        make_settings(tmp_path, heartbeat_s=2.0, rate_abuse_s=1.0, rate_per_s=5.0, rate_burst=5),
        serve_port,
    )
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()


async def test_killed_host_loses_no_acknowledged_message(recoverable: Server) -> None:
    fresh = recoverable
    s = f"s-{uuid.uuid4().hex[:6]}"
    a, _ = await Raw.open(fresh.ws(f"/ws/chat/{s}"), fresh.token("a", sessions=[s]))
    b, _ = await Raw.open(fresh.ws(f"/ws/chat/{s}"), fresh.token("b", sessions=[s]))

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(0.5)
            await b.send({"type": "ping"})

    pinger = asyncio.create_task(keep_alive())
    idx = host_index(f"chat:{s}", fresh.settings.hosts)
    host = ray.get_actor(host_name(idx), namespace=fresh.settings.ray_namespace)
    acked: list[int] = []
    for i in range(30):
        if i == 10:
            ray.kill(host, no_restart=False)
        await a.send({"type": "message", "id": f"k{i}", "body": {"n": i}})
        ack = await a.until(lambda f: f["type"] in ("ack", "error"), timeout=60)
        assert ack["type"] == "ack", ack
        acked.append(ack["offset"])
        await a.send({"type": "ping"})
    assert acked == list(range(1, 31))
    got = await b.collect(is_msg, 30, timeout=60)
    assert [m["offset"] for m in got] == list(range(1, 31))
    assert [m["id"] for m in got] == [f"k{i}" for i in range(30)]
    pinger.cancel()
    await a.send({"type": "history", "limit": 100})
    hist = await a.until(lambda f: f["type"] == "history")
    assert [m["offset"] for m in hist["messages"]] == list(range(1, 31))
    stored = open_store(fresh.settings.store_url())  # the backend under test holds them, once
    try:
        assert [m.id for m in stored.messages_after(s, 0, 100, 100)] == [f"k{i}" for i in range(30)]
    finally:
        stored.close()
    await asyncio.gather(a.close(), b.close())


async def test_restart_on_same_data_keeps_history_and_resume(recoverable: Server) -> None:
    fresh = recoverable
    s = f"s-{uuid.uuid4().hex[:6]}"
    a, w = await Raw.open(fresh.ws(f"/ws/chat/{s}"), fresh.token("a", sessions=[s]))
    for i in range(6):
        await a.send({"type": "message", "id": f"r{i}", "body": {"n": i}})
    await a.collect(lambda f: f["type"] == "ack", 6)
    epoch = w["epoch"]
    await a.close()
    fresh.stop()
    fresh.deploy()
    b, w2 = await Raw.open(fresh.ws(f"/ws/chat/{s}"), fresh.token("b", sessions=[s]),
                           resume={"offset": 2, "epoch": epoch})
    assert w2["epoch"] == epoch and w2["offset"] == 6 and w2["recovered"] is True
    replay = await b.collect(is_msg, 4)
    assert [m["id"] for m in replay] == ["r2", "r3", "r4", "r5"]
    await b.send({"type": "history"})
    hist = await b.until(lambda f: f["type"] == "history")
    assert [m["offset"] for m in hist["messages"]] == [1, 2, 3, 4, 5, 6] and hist["complete"]
    # an idempotent retry of a message from before the restart is still recognised
    await b.send({"type": "message", "id": "r9", "body": {}})
    assert (await b.until(lambda f: f["type"] == "ack"))["offset"] == 7
    await b.close()


async def test_postgres_restart_mid_chat_loses_and_repeats_nothing(
    serve_port: int, tmp_path: Path, pg_server: PgServer
) -> None:
    """PostgreSQL stops while messages are in flight: their acks wait for it, and once it is
    back every message is stored, acknowledged and delivered exactly once."""
    with fresh_schema(pg_server.url) as url:
        srv = Server(make_settings(tmp_path, store=url), serve_port)
        srv.deploy()
        try:
            s = f"s-{uuid.uuid4().hex[:6]}"
            a, _ = await Raw.open(srv.ws(f"/ws/chat/{s}"), srv.token("a", sessions=[s]))
            b, _ = await Raw.open(srv.ws(f"/ws/chat/{s}"), srv.token("b", sessions=[s]))
            for i in range(5):
                await a.send({"type": "message", "id": f"p{i}", "body": {"n": i}})
            acks = await a.collect(lambda f: f["type"] in ("ack", "error"), 5)
            await asyncio.to_thread(pg_server.stop)
            try:
                for i in range(5, 10):  # written while the database is down
                    await a.send({"type": "message", "id": f"p{i}", "body": {"n": i}})
            finally:
                await asyncio.to_thread(pg_server.start)
            acks += await a.collect(lambda f: f["type"] in ("ack", "error"), 5, timeout=60)
            for i in range(10, 15):
                await a.send({"type": "message", "id": f"p{i}", "body": {"n": i}})
            acks += await a.collect(lambda f: f["type"] in ("ack", "error"), 5, timeout=60)
            assert [f.get("offset") for f in acks] == list(range(1, 16)), acks
            got = await b.collect(is_msg, 15, timeout=60)
            assert [m["id"] for m in got] == [f"p{i}" for i in range(15)]
            assert [m["offset"] for m in got] == list(range(1, 16))
            stored = open_store(srv.settings.store_url())
            try:
                assert [m.id for m in stored.messages_after(s, 0, 100, 100)] == [
                    f"p{i}" for i in range(15)]
            finally:
                stored.close()
            await asyncio.gather(a.close(), b.close())
        finally:
            srv.stop()


async def test_silent_client_closed_4408_and_abuser_4429(strict: Server) -> None:
    fresh = strict
    s = f"s-{uuid.uuid4().hex[:6]}"
    quiet, _ = await Raw.open(fresh.ws(f"/ws/chat/{s}"), fresh.token("q", sessions=[s]))
    assert await quiet.closed_with(timeout=10) == 4408  # 2 × heartbeat_s of silence
    abuser, _ = await Raw.open(fresh.ws(f"/ws/chat/{s}"), fresh.token("x", sessions=[s]))

    async def flood() -> None:
        for i in range(2000):
            await abuser.send({"type": "status", "status": "typing", "id": str(i)})
            await asyncio.sleep(0.005)

    task = asyncio.create_task(flood())
    code = await abuser.closed_with(timeout=20)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert code == 4429
