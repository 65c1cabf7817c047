"""Every error Confide raises on purpose, each with its protocol error code or close code.

Only the gateway maps these to frames and closes. Messages never carry bodies, tokens,
keys or ciphertexts: they are written for a client to read.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class ErrorCode(str, Enum):
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INTERNAL = "internal"
    #: REST only: a request body over its endpoint's limit (413).
    TOO_LARGE = "too_large"
    #: Load shedding (fhe helper, issue 8): refused, not lost; retry later with backoff.
    OVERLOADED = "overloaded"


class CloseCode(IntEnum):
    GOING_AWAY = 1001
    TOO_LARGE = 1009
    INTERNAL = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_HANDSHAKE = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TIMEOUT = 4408
    SESSION_ENDED = 4410
    RATE_LIMITED = 4429
    OVERLOADED = 4503


#: Close codes after which a client reconnects (PROTOCOL.md, "Errors and close codes").
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 4408, 4429, 4503})


class ConfideError(Exception):
    """A recoverable problem: answered with an `error` frame, the connection stays open."""

    code: ErrorCode = ErrorCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str, *, frame_id: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.frame_id = frame_id


class InvalidMessage(ConfideError):
    code = ErrorCode.INVALID_MESSAGE
    http_status = 400


class UnknownType(ConfideError):
    code = ErrorCode.UNKNOWN_TYPE
    http_status = 400


class RateLimited(ConfideError):
    code = ErrorCode.RATE_LIMITED
    http_status = 429


class Forbidden(ConfideError):
    code = ErrorCode.FORBIDDEN
    http_status = 403


class NotFound(ConfideError):
    code = ErrorCode.NOT_FOUND
    http_status = 404


class Conflict(ConfideError):
    code = ErrorCode.CONFLICT
    http_status = 409


class Internal(ConfideError):
    code = ErrorCode.INTERNAL
    http_status = 500


class Overloaded(Internal):
    """Load shedding: the work was refused, not lost; the caller may retry later."""

    code = ErrorCode.OVERLOADED
    http_status = 503


class TooLarge(ConfideError):
    """A REST body over its endpoint's limit (PROTOCOL 1.1): 413 before the rest is read."""

    code = ErrorCode.TOO_LARGE
    http_status = 413


class CloseConnection(Exception):
    """The connection must end with this close code (a fatal protocol condition)."""

    def __init__(self, close_code: CloseCode, reason: str = "") -> None:
        self.close_code = close_code
        self.reason = reason or close_code.name.lower().replace("_", " ")
        super().__init__(self.reason)  # the same message before and after a pickle

    def __reduce__(self) -> tuple[object, ...]:
        # Crosses Ray boundaries (host → gateway): rebuild from code and reason.
        return (_rebuild_close, (type(self), self.close_code, self.reason))


def _rebuild_close(cls: type[CloseConnection], code: CloseCode, reason: str) -> CloseConnection:
    exc = CloseConnection.__new__(cls)
    CloseConnection.__init__(exc, code, reason)
    return exc


class Unauthorized(CloseConnection):
    def __init__(self, reason: str = "unauthorized") -> None:
        super().__init__(CloseCode.UNAUTHORIZED, reason)
