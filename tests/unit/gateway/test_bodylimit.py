"""The REST body limit middleware, driven with fake ASGI receive/send."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from confide.errors import TooLarge
from gateway.bodylimit import BodyLimit, BodyLimits


class App:
    """Reads the whole body, like an endpoint calling `request.body()`."""

    def __init__(self) -> None:
        self.body = b""
        self.called = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        while True:
            msg = await receive()
            self.body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def scope(path: str, method: str = "POST", length: int | None = None) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "method": method, "path": path, "headers": headers}


class Stream:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        chunk = self.chunks[self.read]
        self.read += 1
        return {"type": "http.request", "body": chunk, "more_body": self.read < len(self.chunks)}


class Sent:
    def __init__(self) -> None:
        self.messages: list[MutableMapping[str, Any]] = []

    async def __call__(self, msg: MutableMapping[str, Any]) -> None:
        self.messages.append(msg)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.messages[1:]))


def limits(default: int = 100, key_bundle: int = 1000) -> BodyLimits:
    return BodyLimits(default=default, key_bundle=key_bundle)


async def test_declared_length_over_the_limit_is_refused_unread() -> None:
    app, sent, stream = App(), Sent(), Stream([b"x" * 10] * 100)
    await BodyLimit(app, limits())(scope("/api/notifications", length=101), stream.receive, sent)
    assert not app.called and stream.read == 0
    assert sent.status == 413 and sent.json["error"]["code"] == "too_large"


async def test_streamed_body_stops_at_the_first_chunk_past_the_limit() -> None:
    app, sent, stream = App(), Sent(), Stream([b"x" * 40] * 100)
    with pytest.raises(TooLarge):  # the app's ConfideError handler answers 413
        await BodyLimit(app, limits())(scope("/api/notifications"), stream.receive, sent)
    assert stream.read == 3  # 120 bytes > 100: nothing after that chunk is read
    assert TooLarge.http_status == 413 and TooLarge.code.value == "too_large"


async def test_key_bundles_have_their_own_limit() -> None:
    for path, length, status in [("/api/fhe/keys", 900, 200), ("/api/fhe/keys", 1001, 413),
                                 ("/api/sessions/s1/fhe", 101, 413), ("/api/x", 100, 200)]:
        app, sent = App(), Sent()
        stream = Stream([b"x" * length])
        await BodyLimit(app, limits())(scope(path, length=length), stream.receive, sent)
        assert sent.status == status, path


async def test_websockets_pass_through() -> None:
    app, sent = App(), Sent()
    stream = Stream([b"x" * 1000])
    await BodyLimit(app, limits())({"type": "websocket"}, stream.receive, sent)
    assert app.called and app.body == b"x" * 1000
