"""A scripted server side of protocol v1 on 127.0.0.1 (port 0), for the SDK's unit tests.

`ChatServer` plays a chat session (log, acks, broadcast, resume, history) with knobs for the
failure cases; other tests write their own small handlers and run them with `running()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from confide.client import ConnectionOptions

Frame = dict[str, Any]
Handler = Callable[[ServerConnection], Awaitable[None]]
#: Tiny reconnect delays for tests.
FAST: ConnectionOptions = {"base_backoff_s": 0.005, "max_backoff_s": 0.02}


@contextlib.asynccontextmanager
async def running(handler: Handler, **options: Any) -> AsyncIterator[str]:
    """Serve `handler` on a free port; yields `ws://127.0.0.1:PORT`."""
    async with serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=[Subprotocol("confide.v1")],
        close_timeout=0.5,
        **options,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def send(ws: ServerConnection, frame: Frame) -> None:
    await ws.send(json.dumps(frame))


async def recv(ws: ServerConnection) -> Frame:
    frame = json.loads(await ws.recv())
    assert isinstance(frame, dict)
    return frame


def welcome(heartbeat_s: float = 30.0, **fields: Any) -> Frame:
    return {
        "type": "welcome",
        "user": "alice",
        "role": "client",
        "heartbeat_s": heartbeat_s,
        **fields,
    }


class Recorder:
    """Things a server saw, with a wait on any condition over them."""

    def __init__(self) -> None:
        self.hellos: list[Frame] = []
        self.received: list[Frame] = []
        self.sockets: list[ServerConnection] = []
        #: Per connection, the extensions its upgrade request offered.
        self.offered: list[str | None] = []
        self._changed = asyncio.Event()

    def changed(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 3.0) -> None:
        async def wait() -> None:
            while not condition():
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def of_type(self, kind: str) -> list[Frame]:
        return [f for f in self.received if f.get("type") == kind]


class Responder(Recorder):
    """A server that welcomes each connection, then answers each frame with `_answer`."""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.offered.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        self.hellos.append(await recv(ws))
        await send(ws, welcome())
        self.sockets.append(ws)
        self.changed()
        try:
            while True:
                frame = await recv(ws)
                self.received.append(frame)
                await self._answer(ws, frame)
                self.changed()
        except ConnectionClosed:
            self.sockets.remove(ws)
            self.changed()

    async def _answer(self, ws: ServerConnection, frame: Frame) -> None:
        raise NotImplementedError


class ChatServer(Recorder):
    """One chat session `s1`, user `alice`."""

    def __init__(self, heartbeat_s: float = 30.0) -> None:
        super().__init__()
        self.heartbeat_s = heartbeat_s
        self.epoch = "e1"
        self.log: list[Frame] = []
        self.retained_from = 1
        #: Close codes for the next connections, sent right after their hello.
        self.reject: list[int] = []
        #: Messages to store, then close 1012 without ack or broadcast.
        self.store_then_close = 0
        #: Error codes to answer the next messages with, instead of storing them.
        self.refuse: list[str] = []
        #: Frames sent on the next connection right after welcome and replay.
        self.after_welcome: list[Frame] = []

    def store(self, body: Frame, sender: str = "bob", id: str | None = None) -> Frame:
        offset = len(self.log) + 1
        message = {
            "type": "message",
            "session_id": "s1",
            "offset": offset,
            "epoch": self.epoch,
            "id": id or f"m{offset}",
            "sender": sender,
            "ts": time.time(),
            "body": body,
            "encrypted": False,
        }
        self.log.append(message)
        return message

    async def broadcast(self, frame: Frame) -> None:
        for ws in list(self.sockets):
            with contextlib.suppress(ConnectionClosed):
                await send(ws, frame)

    def _replay(self, resume: Frame | None) -> tuple[bool, list[Frame]]:
        if resume is None:
            return True, []
        offset = resume["offset"]
        lost = offset + 1 < self.retained_from or offset > len(self.log)
        if resume["epoch"] != self.epoch or lost:
            return False, []
        return True, self.log[offset:]

    async def handler(self, ws: ServerConnection) -> None:
        hello = await recv(ws)
        headers = ws.request.headers.raw_items() if ws.request else []
        hello["_headers"] = {k.lower(): v for k, v in headers}
        hello["_subprotocol"] = ws.subprotocol
        self.hellos.append(hello)
        self.changed()
        if self.reject:
            await ws.close(self.reject.pop(0), "rejected")
            return
        recovered, replay = self._replay(hello.get("resume"))
        await send(
            ws,
            welcome(
                self.heartbeat_s,
                session_id="s1",
                epoch=self.epoch,
                offset=len(self.log),
                members=[],
                recovered=recovered,
            ),
        )
        for frame in [*replay, *self.after_welcome]:
            await send(ws, frame)
        self.after_welcome = []
        self.sockets.append(ws)
        self.changed()
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.received.append(frame)
                await self._answer(ws, frame)
                self.changed()
        except ConnectionClosed:
            pass
        finally:
            self.sockets.remove(ws)
            self.changed()

    async def _answer(self, ws: ServerConnection, frame: Frame) -> None:
        kind = frame["type"]
        if kind == "ping":
            await send(ws, {"type": "pong", "id": frame.get("id")})
        elif kind == "message":
            await self._message(ws, frame)
        elif kind == "history":
            before = frame.get("before") or len(self.log) + 1
            kept = [m for m in self.log if self.retained_from <= m["offset"] < before]
            page = kept[-frame.get("limit", 50) :]
            complete = not page or page[0]["offset"] <= self.retained_from
            await send(ws, {"type": "history", "messages": page, "complete": complete})
        elif kind == "status":
            await self.broadcast(
                {"type": "status", "user": "alice", "status": frame["status"], "ts": time.time()}
            )

    async def _message(self, ws: ServerConnection, frame: Frame) -> None:
        known = {m["id"]: m["offset"] for m in self.log}
        if frame["id"] in known:
            await send(ws, {"type": "ack", "id": frame["id"], "offset": known[frame["id"]]})
            return
        if self.refuse:
            code = self.refuse.pop(0)
            await send(ws, {"type": "error", "code": code, "message": code, "id": frame["id"]})
            return
        message = self.store(frame["body"], sender="alice", id=frame["id"])
        if self.store_then_close:
            self.store_then_close -= 1
            await ws.close(1012, "restart")
            return
        await self.broadcast(message)
        await send(ws, {"type": "ack", "id": frame["id"], "offset": message["offset"]})


#: A scripted REST answer: (path, headers, raw body) → (status, JSON answer).
Answer = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]


@contextlib.contextmanager
def json_api(
    answer: Answer, received: list[tuple[str, dict[str, str], bytes]]
) -> Iterator[str]:
    """A stdlib HTTP server on a free port answering POSTs with `answer`; every request
    is appended to `received`. Yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, dict(self.headers), raw))
            status, body = answer(self.path, dict(self.headers), raw)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST  # the fhe helpers' GET and PUT too

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
