"""A thin raw WebSocket client for integration tests (the SDK is tested separately)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 15.0


class Raw:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, url: str, token: str | None, *, resume: dict[str, Any] | None = None,
        header: bool = False, subprotocols: list[str] | None = None,
    ) -> tuple[Raw, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if header and token else None
        ws = await connect(url, additional_headers=headers, max_size=2**24,
                           subprotocols=subprotocols)  # type: ignore[arg-type]
        raw = cls(ws)
        hello: dict[str, Any] = {"type": "hello"}
        if token and not header:
            hello["token"] = token
        if resume is not None:
            hello["resume"] = resume
        await raw.send(hello)
        welcome = await raw.recv()
        return raw, welcome

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.seen.append(frame)
        return frame

    async def until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        async def loop() -> dict[str, Any]:
            while True:
                frame = await self.recv()
                if pred(frame):
                    return frame

        return await asyncio.wait_for(loop(), timeout)

    async def collect(
        self, pred: Callable[[dict[str, Any]], bool], count: int, timeout: float = TIMEOUT
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        async def loop() -> None:
            while len(out) < count:
                frame = await self.recv()
                if pred(frame):
                    out.append(frame)

        await asyncio.wait_for(loop(), timeout)
        return out

    async def closed_with(self, timeout: float = TIMEOUT) -> int:
        """Read until the server closes; the close code."""
        async def loop() -> int:
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else 1006
        return await asyncio.wait_for(loop(), timeout)

    async def close(self) -> None:
        await self.ws.close()


def is_msg(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "message"
