"""The client's heartbeat (PROTOCOL.md): pings, and the end of a connection gone silent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from confide.protocol import Ping

log = logging.getLogger("confide.client")


async def keepalive(
    ws: ClientConnection, heartbeat: float, last_frame_at: Callable[[], float], url: str
) -> bool:
    """Ping every 0.8 × heartbeat; when no frame came for 2 × heartbeat (`last_frame_at()`:
    the loop time of the last one), abort the connection and return True."""
    loop = asyncio.get_running_loop()
    n, next_ping = 0, loop.time() + heartbeat * 0.8
    while True:
        deadline = last_frame_at() + heartbeat * 2
        await asyncio.sleep(max(0.0, min(next_ping, deadline) - loop.time()))
        now = loop.time()
        if now >= last_frame_at() + heartbeat * 2:
            log.warning("%s: no frame for %.1f s, reconnecting", url, heartbeat * 2)
            ws.transport.abort()
            return True
        if now >= next_ping:
            n, next_ping = n + 1, now + heartbeat * 0.8
            try:
                await ws.send(Ping(type="ping", id=n).to_json())
            except ConnectionClosed:
                return False
