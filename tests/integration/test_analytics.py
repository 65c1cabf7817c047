"""Analytics streams and the operators' /metrics endpoint."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Server
from tests.integration.wsclient import Raw


async def analytics(server: Server, user: str, role: str = "client",
                    sessions: list[str] | None = None) -> Raw:
    raw, welcome = await Raw.open(server.ws("/ws/analytics"),
                                  server.token(user, role, sessions=sessions))
    assert welcome["type"] == "welcome"
    return raw


def metrics_of(stream: str) -> Any:
    return lambda f: f["type"] == "metrics" and f["stream"] == stream


async def test_authorization_of_streams(server: Server) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    client = await analytics(server, "pat", sessions=[s])
    await client.send({"type": "subscribe", "stream": "system"})
    assert (await client.until(lambda f: f["type"] == "error"))["code"] == "forbidden"
    await client.send({"type": "subscribe", "stream": "session:other"})
    assert (await client.until(lambda f: f["type"] == "error"))["code"] == "forbidden"
    await client.send({"type": "subscribe", "stream": "nonsense"})
    assert (await client.until(lambda f: f["type"] == "error"))["code"] == "not_found"
    admin = await analytics(server, "root", "admin")
    await admin.send({"type": "subscribe", "stream": "session:never-created"})
    assert (await admin.until(lambda f: f["type"] == "error"))["code"] == "not_found"
    await admin.close()
    joined, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("pat", sessions=[s]))
    await joined.close()  # the session exists now
    await client.send({"type": "subscribe", "stream": f"session:{s}"})
    assert (await client.until(lambda f: f["type"] == "subscribed"))["stream"] == f"session:{s}"
    snap = await client.until(metrics_of(f"session:{s}"))
    assert isinstance(snap["data"]["online"], int) and "messages_per_min" in snap["data"]
    await client.close()


async def test_system_stream_follows_connections_and_traffic(server: Server) -> None:
    admin = await analytics(server, "root", "admin")
    await admin.send({"type": "subscribe", "stream": "system"})
    await admin.until(lambda f: f["type"] == "subscribed")

    async def figures(pred: Any, timeout: float = 20) -> dict[str, Any]:
        frame = await admin.until(lambda f: metrics_of("system")(f) and pred(f["data"]),
                                  timeout=timeout)
        data: dict[str, Any] = frame["data"]
        return data

    base = await figures(lambda d: d["gateways"] >= 1)
    chat_before = base["connections"].get("chat", 0)
    s = f"s-{uuid.uuid4().hex[:6]}"
    clients = [
        (await Raw.open(server.ws(f"/ws/chat/{s}"), server.token(u, sessions=[s])))[0]
        for u in ("a", "b", "c")
    ]
    await figures(lambda d: d["connections"].get("chat", 0) >= chat_before + 3)

    async def chatter(raw: Raw, name: str) -> None:
        for i in range(40):
            await raw.send({"type": "message", "id": f"{name}{i}", "body": {"i": i}})
            await asyncio.sleep(0.06)

    traffic = asyncio.gather(*(chatter(c, n) for c, n in zip(clients, "abc", strict=True)))
    busy = await figures(lambda d: d["messages_per_s"] > 5)
    assert busy["ack_latency_ms"]["p50"] is not None
    assert busy["memory_mb"]["gateways"] > 0 and busy["hosts"] >= 1
    fhe = (await figures(lambda d: "fhe" in d, timeout=40))["fhe"]  # health checks: 10 s
    assert fhe["workers"] >= 1 and fhe["queue_depth"] >= 0
    await traffic
    for c in clients:
        await c.close()
    await figures(lambda d: d["connections"].get("chat", 0) <= chat_before)
    await admin.close()


async def test_session_stream_for_members(server: Server) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    a, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("a", sessions=[s]))
    watcher = await analytics(server, "dr", "therapist", sessions=[s])
    await watcher.send({"type": "subscribe", "stream": f"session:{s}"})
    await watcher.until(metrics_of(f"session:{s}"))
    b, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("b", sessions=[s]))
    await a.send({"type": "message", "id": "1", "body": {}})
    await a.until(lambda f: f["type"] == "ack")
    await b.send({"type": "message", "id": "2", "body": {}})
    await b.until(lambda f: f["type"] == "ack")
    frame = await watcher.until(
        lambda f: metrics_of(f"session:{s}")(f) and f["data"]["mean_response_s"] is not None
        and f["data"]["online"] == 2
    )
    assert frame["data"]["messages_per_min"] == 2.0
    await watcher.send({"type": "unsubscribe", "stream": f"session:{s}"})
    assert (await watcher.until(lambda f: f["type"] == "unsubscribed"))["stream"] == f"session:{s}"
    await asyncio.gather(a.close(), b.close(), watcher.close())


async def test_metrics_endpoint_is_prometheus_text(server: Server) -> None:
    s = f"s-{uuid.uuid4().hex[:6]}"
    raw, _ = await Raw.open(server.ws(f"/ws/chat/{s}"), server.token("m", sessions=[s]))
    await raw.send({"type": "message", "id": "x", "body": {}})
    await raw.until(lambda f: f["type"] == "ack")
    async with httpx.AsyncClient(base_url=server.http) as c:
        r = await c.get("/metrics")
        health = await c.get("/healthz")
    assert health.status_code == 200 and health.json()["ready"] is True
    async with httpx.AsyncClient(base_url=server.http) as c:
        missing = await c.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    for name in ("confide_connections", "confide_connections_opened",
                 "confide_connection_duration_seconds", "confide_closes",
                 "confide_resume_attempts", "confide_frames_received", "confide_frames_sent",
                 "confide_chat_messages", "confide_frame_bytes", "confide_errors",
                 "confide_ack_latency_seconds", "confide_slow_consumers",
                 "confide_memory_bytes"):
        assert name in names, name
    await raw.close()
