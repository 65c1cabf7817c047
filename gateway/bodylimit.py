"""REST body limits enforced as the body arrives (PROTOCOL 1.1, "Bodies over the limit").

An ASGI middleware: a request whose `Content-Length` exceeds its route's limit is answered
`413 {"error":{"code":"too_large",...}}` before any of the body is read; a body without a
length (chunked) is counted as it streams in, and the read that passes the limit raises
`TooLarge`, which the app answers with the same 413. Either way the rest is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from confide.config import Settings
from confide.errors import TooLarge

#: The route with its own limit (`max_key_bundle_bytes`); every other one has the default.
KEY_BUNDLES = ("POST", "/api/fhe/keys")


@dataclass
class BodyLimits:
    """The limits of this replica (set from its Settings when the replica starts)."""

    default: int = Settings.model_fields["max_rest_body_bytes"].default
    key_bundle: int = Settings.model_fields["max_key_bundle_bytes"].default

    def configure(self, settings: Settings) -> None:
        self.default = settings.max_rest_body_bytes
        self.key_bundle = settings.max_key_bundle_bytes

    def for_request(self, method: str, path: str) -> int:
        if method == KEY_BUNDLES[0] and path.rstrip("/") == KEY_BUNDLES[1]:
            return self.key_bundle
        return self.default


def _too_large(limit: int) -> JSONResponse:
    message = f"request body larger than {limit} bytes"
    return JSONResponse({"error": {"code": "too_large", "message": message}}, status_code=413)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """Pure ASGI middleware (no buffering): see the module's docstring."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_request(scope["method"], scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(f"request body larger than {limit} bytes")
            return message

        await self.app(scope, counted, send)
