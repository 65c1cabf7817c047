"""The shared machinery: URL checks, events buffer, handshake failures."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from confide.client import ChatClient, ClientClosed, ConnectError
from confide.client.events import FrameQueue
from tests.unit.client.conftest import FAST, recv, running, send


def test_only_websocket_urls() -> None:
    with pytest.raises(ValueError):
        ChatClient("http://127.0.0.1/ws/chat/s1", "t")


async def test_frame_queue_takes_by_type_and_drops_oldest() -> None:
    queue = FrameQueue(maxlen=3)
    for i, kind in enumerate(["a", "b", "a", "b"]):
        queue.put({"type": kind, "n": i})
    assert (await queue.get("a"))["n"] == 2  # n=0 was dropped: the buffer holds 3
    assert (await queue.get())["n"] == 1
    queue.close(ClientClosed(1000, "bye"))
    assert (await queue.get())["n"] == 3
    with pytest.raises(ClientClosed):
        await queue.get()


async def test_first_frame_other_than_welcome_is_fatal() -> None:
    async def handler(ws: ServerConnection) -> None:
        await recv(ws)
        await send(ws, {"type": "error", "code": "internal", "message": "?"})
        await ws.wait_closed()

    async with running(handler) as base:
        client = ChatClient(f"{base}/ws/chat/s1", "t", **FAST)
        with pytest.raises(ConnectError) as failed:
            await client.connect(timeout=3)
        assert failed.value.code == 1002


async def test_http_refusal_of_the_upgrade_is_fatal() -> None:
    async def handler(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.FORBIDDEN, "no\n")

    async with running(handler, process_request=refuse) as base:
        client = ChatClient(f"{base}/ws/chat/s1", "t", **FAST)
        with pytest.raises(ConnectError) as failed:
            await client.connect(timeout=3)
        assert failed.value.code == 4403 and failed.value.reason == "HTTP 403"


async def test_network_errors_are_retried_until_the_connect_timeout() -> None:
    client = ChatClient("ws://127.0.0.1:9/ws/chat/s1", "t", **FAST)  # nothing listens there
    states: list[str] = []
    client.on("state", lambda e: states.append(e["state"]))
    with pytest.raises(ConnectError) as failed:
        await client.connect(timeout=0.3)
    assert failed.value.code is None and client.state == "closed"
    assert states[:2] == ["connecting", "reconnecting"] and states[-1] == "closed"


async def test_http_404_after_a_welcome_is_retried() -> None:
    """A server restarting answers 404 until its routes are back: a client that was
    welcomed on this URL before keeps retrying, and resumes."""
    attempts: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        await recv(ws)
        await send(ws, {"type": "welcome", "user": "alice", "role": "client",
                        "heartbeat_s": 30.0, "session_id": "s1", "epoch": "e",
                        "offset": 0, "recovered": False})
        if len(attempts) == 1:
            await ws.close(1012, "restarting")
        else:
            await ws.wait_closed()

    def restarting(connection: ServerConnection, request: Request) -> Response | None:
        attempts.append(1)
        if 2 <= len(attempts) <= 3:
            return connection.respond(HTTPStatus.NOT_FOUND, "no route yet\n")
        return None

    async with running(handler, process_request=restarting) as base:
        client = ChatClient(f"{base}/ws/chat/s1", "t", **FAST)
        welcomes: list[dict[str, object]] = []
        client.on("welcome", welcomes.append)
        await client.connect(timeout=3)
        for _ in range(300):
            if len(welcomes) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(welcomes) == 2 and len(attempts) == 4 and client.state == "open"
        await client.disconnect()
