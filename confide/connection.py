"""Per-connection inbound rules (sans-I/O): handshake, frame size, rate limit, parsing."""

from __future__ import annotations

import json

from confide.auth import Principal, TokenVerifier
from confide.config import Settings
from confide.errors import CloseCode, CloseConnection, RateLimited, Unauthorized
from confide.protocol import (
    Endpoint,
    Frame,
    FrameId,
    Hello,
    frame_id,
    parse_client_frame,
    parse_hello,
)
from confide.ratelimit import TokenBucket


def frame_limit(settings: Settings, endpoint: Endpoint, large: bool = False) -> int:
    """The frame size limit of an endpoint (PROTOCOL.md, Transport)."""
    if endpoint == "analytics" or large:
        return settings.max_large_frame_bytes
    return settings.max_frame_bytes


def authenticate(
    verifier: TokenVerifier, header_token: str | None, first_frame: str | bytes
) -> tuple[Principal, Hello]:
    """The first frame must be a `hello`; the token is in it or in the upgrade header."""
    hello = parse_hello(first_frame)
    if hello is None:
        raise CloseConnection(CloseCode.BAD_HANDSHAKE, "first frame must be hello")
    token = hello.token or header_token
    if not token:
        raise Unauthorized("no token")
    return verifier.verify(token), hello


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


class InboundGate:
    """Checks every frame after the handshake, in order: size, token expiry, rate, shape."""

    def __init__(
        self, settings: Settings, endpoint: Endpoint, who: Principal, now: float, limit: int
    ) -> None:
        self.endpoint = endpoint
        self.who = who
        self.limit = limit
        #: A connection lives as long as its token would be accepted: exp plus the leeway.
        self.expires_at = who.expires_at + settings.jwt_leeway_s
        self._bucket = TokenBucket(settings.rate_per_s, settings.rate_burst,
                                   settings.rate_abuse_s, now)

    def check(self, text: str | bytes, now: float) -> Frame:
        size = len(text.encode() if isinstance(text, str) else text)
        if size > self.limit:
            raise CloseConnection(CloseCode.TOO_LARGE, "frame too large")
        if now >= self.expires_at:
            raise Unauthorized("token expired")
        if not self._bucket.allow(now):
            if self._bucket.abusive(now):
                raise CloseConnection(CloseCode.RATE_LIMITED, "rate limit exceeded")
            raise RateLimited("too many frames", frame_id=_peek_id(text))
        if isinstance(text, bytes):
            try:
                text = text.decode()
            except UnicodeDecodeError:
                text = ""
        return parse_client_frame(text, self.endpoint)


def _peek_id(text: str | bytes) -> FrameId | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return frame_id(data) if isinstance(data, dict) else None
