"""Exceptions of the SDK. Messages carry close codes and server error codes, never frame bodies."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error the SDK raises on purpose."""


class _CloseInfo(ClientError):
    what = "closed"

    def __init__(self, code: int | None, reason: str = "") -> None:
        where = self.what if code is None else f"{self.what} ({code})"
        super().__init__(f"{where}: {reason}" if reason else where)
        self.code = code
        self.reason = reason


class ClientClosed(_CloseInfo):
    """The client is closed: by `disconnect()` (code 1000) or by a close code after which it
    does not reconnect (4400, 4401, 4403, 4404, 4410, 1009, ...); `code` is None before the
    first `connect()`."""


class ConnectError(ClientClosed):
    """`connect()` failed: the server refused the connection for good, or it timed out."""

    what = "could not connect"


class ConnectionLost(_CloseInfo):
    """The connection dropped while a request that is not safe to repeat was in flight
    (`AnalyticsClient.submit`); the client is reconnecting."""

    what = "connection lost"


class ServerError(ClientError):
    """The server answered a request with an `error` frame (`code` is its protocol code)."""

    def __init__(self, code: str, message: str, frame_id: str | int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame_id = frame_id

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> ServerError:
        return cls(str(frame.get("code", "")), str(frame.get("message", "")), frame.get("id"))
