"""One connection's handshake and ending, as `Connection` sees them (PROTOCOL.md).

The `hello` frame, waiting for and checking the server's `welcome`, and the close code and
reason that a closed connection or a refused upgrade stands for.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from confide.client.events import Event
from confide.protocol import Welcome

#: HTTP answers to the upgrade that mean "do not retry", as the matching close code.
FATAL_HTTP = {400: 4400, 401: 4401, 403: 4403, 404: 4404}
ABNORMAL = 1006
PROTOCOL_ERROR = 1002


class NotWelcomed(Exception):
    """The server's first frame was not a valid `welcome`."""


def close_of(error: ConnectionClosed) -> tuple[int, str]:
    if error.rcvd is None:
        return ABNORMAL, "connection lost"
    return error.rcvd.code, error.rcvd.reason


def refused(status: int, welcomed_before: bool) -> tuple[int, str]:
    """The close code and reason of an HTTP answer `status` to the upgrade; `welcomed_before`:
    this URL has welcomed the client before."""
    code = FATAL_HTTP.get(status, ABNORMAL)
    if status == 404 and welcomed_before:
        code = ABNORMAL  # retried: the route exists once the server is back
    return code, f"HTTP {status}"


def hello_frame(client_name: str, token: str | None, resume: dict[str, Any] | None) -> str:
    """The `hello` frame; `token` None when it travels in the `Authorization` header."""
    hello: Event = {"type": "hello", "client": client_name}
    if token is not None:
        hello["token"] = token
    if resume is not None:
        hello["resume"] = resume
    return json.dumps(hello, separators=(",", ":"))


async def recv_within(ws: ClientConnection, timeout: float) -> str | bytes:
    """`ws.recv()` or `asyncio.TimeoutError`. Not `wait_for`: under Python 3.10 it can lose a
    cancellation (`disconnect()`) when the frame arrives at the same moment."""
    recv = asyncio.ensure_future(ws.recv())
    try:
        done, _ = await asyncio.wait([recv], timeout=timeout)
    finally:
        if not recv.done():
            recv.cancel()
    if not done:
        raise asyncio.TimeoutError
    return recv.result()


def parse_welcome(raw: str | bytes) -> Event:
    try:
        frame = json.loads(raw)
        Welcome.model_validate(frame)
    except ValueError:
        raise NotWelcomed from None
    assert isinstance(frame, dict)
    return frame
