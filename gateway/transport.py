"""What the gateway reaches of the server's WebSocket protocol under the ASGI interface.

1. Bounded inflation of compressed frames (PROTOCOL 1.1, "Bodies over the limit").

Serve's direct ingress runs uvicorn with its defaults: permessage-deflate on and a 16 MiB
message limit, which its WebSocket protocol (the `websockets` sans-I/O `ServerProtocol`)
applies *while* inflating. Serve offers no way to pass uvicorn options, so each
connection lowers that protocol's limit to its endpoint's frame limit before the upgrade
is accepted: a compressed frame that inflates past it is closed 1009 by the decompressor
itself, which stops at the limit instead of inflating the rest.

The protocol object is reached through the ASGI `receive` callables (Serve's receive
proxy wraps uvicorn's bound `asgi_receive`). When that chain is not there (another ASGI
server, a Serve upgrade), nothing is changed and the gateway's own size check after
inflation still closes 1009; `bound_inflation` returns False so the caller can log it.

2. Writability. uvicorn's `send` waits while the socket's write buffer is over its high
water mark (a client that does not read). The fan-out writes live frames to connections
directly from its loop; it must not wait there for one slow client (every connection of
the replica would wait with it), so it asks `writable(ws)` first and leaves the frame to
the connection's own writer (and its byte budget, 4503) when the socket is not writable.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocket

_MAX_HOPS = 6


def _server_protocol(ws: WebSocket) -> Any:
    """uvicorn's protocol object under this ASGI connection (it holds `conn`, the
    `websockets` protocol, and `writable`), or None."""
    obj: Any = getattr(ws, "_receive", None)
    for _ in range(_MAX_HOPS):
        if obj is None:
            return None
        conn = getattr(obj, "conn", None)
        if conn is not None and hasattr(conn, "max_message_size"):
            return obj
        inner = getattr(obj, "__self__", None)  # a bound method: its object
        obj = inner if inner is not None else getattr(obj, "_receive", None)
    return None


def _protocol(ws: WebSocket) -> Any:
    """The `websockets` protocol under this ASGI connection, or None."""
    server = _server_protocol(ws)
    return None if server is None else server.conn


def writable(ws: WebSocket) -> asyncio.Event | None:
    """Set while a send would not wait for the socket to drain (None: unknown)."""
    event = getattr(_server_protocol(ws), "writable", None)
    return event if isinstance(event, asyncio.Event) else None


def bound_inflation(ws: WebSocket, limit: int) -> bool:
    """Make frames over `limit` bytes (after inflation) fail while inflating: close 1009."""
    conn = _protocol(ws)
    if conn is None:
        return False
    conn.max_message_size = limit
    return True
