"""The baseline hubs' shared logic, and the bare `websockets` hub (run as a subprocess).

A hub keeps, per chat session, its connections and an offset counter, all in memory: a
`message` frame gets the next offset and goes to every connection of its session, sender
included, as Confide's `message` frame would; the sender also gets an `ack`. Nothing is
stored, checked or ordered across processes. `serve_hub.py` runs the same logic as a Ray
Serve deployment.

    .venv/bin/python benchmarks/hubs.py --port 8765    # prints "ready" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
from typing import Any

#: Connections whose hello names no user get one of these.
_anonymous = itertools.count(1)


class HubState:
    """Members and offsets of every session; the caller owns the sockets."""

    def __init__(self) -> None:
        #: session → {id(connection): connection}
        self.members: dict[str, dict[int, Any]] = {}
        self.offsets: dict[str, int] = {}

    def join(self, session: str, conn: Any, hello: dict[str, Any]) -> tuple[str, str]:
        """Adds `conn`; returns its user and the `welcome` frame."""
        user = str(hello.get("user") or f"anon-{next(_anonymous)}")
        self.members.setdefault(session, {})[id(conn)] = conn
        welcome = {"type": "welcome", "user": user, "role": "client", "heartbeat_s": 25,
                   "session_id": session, "offset": self.offsets.get(session, 0)}
        return user, json.dumps(welcome)

    def leave(self, session: str, conn: Any) -> None:
        members = self.members.get(session)
        if members is not None:
            members.pop(id(conn), None)
            if not members:
                del self.members[session]

    def connections(self, session: str) -> list[Any]:
        return list(self.members.get(session, {}).values())

    def publish(self, session: str, sender: str, frame: dict[str, Any]) -> tuple[str, str]:
        """The broadcast `message` frame and the sender's `ack`, as JSON text."""
        offset = self.offsets.get(session, 0) + 1
        self.offsets[session] = offset
        message = {"type": "message", "session_id": session, "offset": offset,
                   "id": frame.get("id"), "sender": sender, "ts": time.time(),
                   "body": frame.get("body"), "encrypted": False}
        ack = {"type": "ack", "id": frame.get("id"), "offset": offset}
        return json.dumps(message), json.dumps(ack)


def parse(raw: str | bytes) -> dict[str, Any] | None:
    """A JSON object frame, or None for anything else."""
    try:
        frame = json.loads(raw)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


async def serve_bare(port: int) -> None:
    """The bare hub on 127.0.0.1:`port` until SIGINT or SIGTERM."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    state = HubState()

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if not path.startswith("/ws/chat/"):
            await ws.close(4404, "no such endpoint")
            return
        session = path.removeprefix("/ws/chat/")
        hello = parse(await ws.recv())
        if hello is None or hello.get("type") != "hello":
            await ws.close(4400, "expected hello")
            return
        user, welcome = state.join(session, ws, hello)
        try:
            await ws.send(welcome)
            async for raw in ws:
                frame = parse(raw)
                if frame is None or frame.get("type") != "message":
                    continue  # pings and anything else: ignored
                message, ack = state.publish(session, user, frame)
                broadcast(state.connections(session), message)
                await ws.send(ack)
        finally:
            state.leave(session, ws)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20,
                     ping_interval=None, backlog=4096):
        print("ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="bare websockets chat hub")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve_bare(parser.parse_args().port))


if __name__ == "__main__":
    main()
