"""The connection machinery every client shares (PROTOCOL.md: handshake, heartbeat, close codes).

A `Connection` runs one background task that connects, sends `hello`, waits for `welcome`
and reads frames until the connection ends; then it reconnects with full-jitter backoff after
a close code in `RECONNECT_CODES` or a network error, and stops for good after any other code.
Endpoint clients plug in through the hooks `_resume`, `_on_welcome`, `_handle`,
`_on_session_end` and `_on_closed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from confide.client.errors import ClientClosed, ConnectError, ConnectionLost
from confide.client.events import Callback, Event, EventHub
from confide.client.handshake import (
    ABNORMAL,
    PROTOCOL_ERROR,
    NotWelcomed,
    close_of,
    hello_frame,
    parse_welcome,
    recv_within,
    refused,
)
from confide.client.heartbeat import keepalive
from confide.client.options import backoff_delay
from confide.client.pending import PendingRequests
from confide.errors import RECONNECT_CODES
from confide.protocol import SUBPROTOCOL

State = Literal["connecting", "open", "reconnecting", "closed"]

#: Frames up to 8 MiB (analytics, encrypted chat) with headroom: uvicorn's own limit, 16 MiB.
MAX_FRAME_BYTES = 16 * 1024 * 1024
_CLOSE_TIMEOUT_S = 2.0
_MIN_HEARTBEAT_S = 0.01

log = logging.getLogger("confide.client")
_C = TypeVar("_C", bound="Connection")


class Connection:
    """One logical connection to an endpoint, kept open across network failures.

    Options: `client_name` (sent in `hello`), `heartbeat_s` (None: the server's
    `welcome.heartbeat_s`), `base_backoff_s`/`max_backoff_s` (reconnect delays),
    `extra_headers` (upgrade request), `token_in_header` (send the token as
    `Authorization: Bearer` instead of in `hello`), `open_timeout_s` (connect and handshake),
    `request_timeout_s` (default for requests), `event_buffer` (events kept for `events()`),
    `compress` (offer permessage-deflate; off for ciphertexts, which do not compress).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        client_name: str = "confide-py/0.1",
        heartbeat_s: float | None = None,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        extra_headers: Mapping[str, str] | None = None,
        token_in_header: bool = False,
        open_timeout_s: float = 10.0,
        request_timeout_s: float = 30.0,
        event_buffer: int = 1000,
        compress: bool = True,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI:
            raise ValueError(f"not a ws:// or wss:// URL: {url!r}") from None
        self.url = url
        #: The token for the next connection; replace it after a 4401, then `connect()` again.
        self.token = token
        self.client_name = client_name
        self.token_in_header = token_in_header
        self._heartbeat_s = heartbeat_s
        self._base_backoff_s = base_backoff_s
        self._max_backoff_s = max_backoff_s
        self._extra_headers = dict(extra_headers or {})
        self._open_timeout_s = open_timeout_s
        self._request_timeout_s = request_timeout_s
        self._compression: Literal["deflate"] | None = "deflate" if compress else None
        self._hub = EventHub(event_buffer)
        self._state: State = "closed"
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._pending = PendingRequests()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_frame_at = 0.0
        #: The last `welcome` frame.
        self.welcome: Event | None = None
        #: Close code and reason once the client is closed for good.
        self.close_code: int | None = None
        self.close_reason = ""
        #: This URL has welcomed the client before: a later HTTP 404 on the upgrade is a
        #: server (re)starting without its routes yet (a full restart), not a wrong URL.
        self._welcomed_before = False

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> State:
        return self._state

    @property
    def user(self) -> str | None:
        return None if self.welcome is None else str(self.welcome.get("user"))

    async def connect(self, timeout: float | None = None) -> Event:
        """Start the connection and return the first `welcome`.

        Network errors and reconnect codes are retried until `timeout`; a close code that
        forbids reconnecting (or the timeout) raises `ConnectError` with that code.
        """
        if self._runner is None or self._runner.done():
            self.close_code, self.close_reason = None, ""
            self._hub.queue.reopen()
            self._set_state("connecting")
            self._runner = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self._until_open(), timeout)
        except ClientClosed as e:
            raise ConnectError(e.code, e.reason) from None
        except asyncio.TimeoutError:
            await self.disconnect()
            raise ConnectError(None, "timed out") from None
        assert self.welcome is not None
        return self.welcome

    async def disconnect(self) -> None:
        """Close the connection (code 1000) and stop reconnecting. `connect()` starts again."""
        runner, self._runner = self._runner, None
        if runner is None or runner.done():
            return
        runner.cancel()
        await asyncio.wait([runner])
        self._end_session(ClientClosed(1000, "disconnected"))
        self._finish(1000, "disconnected")

    async def __aenter__(self: _C) -> _C:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def on(self, type: str, fn: Callback) -> Callable[[], None]:
        """Call `fn(event)` (sync, or async: run as a task) for each event of `type`, or of
        every type with `"*"`. Returns a function that removes the callback."""
        return self._hub.on(type, fn)

    def events(self) -> AsyncIterator[Event]:
        """Server frames and `state`/`close` events, in order; ends once the client closes."""
        return self._hub.iterate()

    async def next_event(self, type: str | None = None, timeout: float | None = None) -> Event:
        """The oldest buffered event (of `type`), waiting up to `timeout` seconds for one;
        raises `ClientClosed` once closed and none is left."""
        return await asyncio.wait_for(self._hub.queue.get(type), timeout)

    # ------------------------------------------------------------------ hooks

    def _resume(self) -> dict[str, Any] | None:
        """The `hello.resume` field."""
        return None

    async def _on_welcome(self, welcome: Event) -> None:
        """A `welcome` arrived; frames sent here go out before the state becomes open."""

    async def _handle(self, frame: Event) -> bool:
        """A server frame; True when consumed (not emitted as an event; errors always are)."""
        return False

    def _on_session_end(self) -> None:
        """A connection ended; session tasks and pending requests are already dropped."""

    def _on_closed(self, closed: ClientClosed) -> None:
        """The client closed for good."""

    # ------------------------------------------------------------------ for the clients

    def _is_open(self) -> bool:
        return self._state == "open" and self._ws is not None

    async def _until_open(self) -> None:
        while not self._is_open():
            if self._state == "closed":
                raise ClientClosed(self.close_code, self.close_reason or "not connected")
            await self._changed.wait()

    async def _send(self, frame: Event) -> None:
        """Send on the current connection or raise `ConnectionLost`."""
        ws = self._ws
        if ws is None:
            raise ConnectionLost(ABNORMAL, "not connected")
        try:
            await ws.send(json.dumps(frame, separators=(",", ":")))
        except ConnectionClosed as e:
            raise ConnectionLost(*close_of(e)) from None

    async def _send_when_open(self, frame: Event) -> None:
        """Send once the connection is open, again on the next one if it drops meanwhile."""
        while True:
            await self._until_open()
            try:
                return await self._send(frame)
            except ConnectionLost:
                continue

    async def _request(
        self,
        frame: Event,
        match: Callable[[Event], bool],
        *,
        retry: bool = True,
        timeout: float | None = None,
    ) -> Event:
        """Send `frame` once open and return the first frame `match` accepts (within `timeout`,
        default `request_timeout_s`). When the connection drops first, the frame is sent
        again on the next one (`retry`) or `ConnectionLost` is raised."""
        return await asyncio.wait_for(
            self._exchange(frame, match, retry), timeout or self._request_timeout_s
        )

    async def _exchange(self, frame: Event, match: Callable[[Event], bool], retry: bool) -> Event:
        while True:
            await self._until_open()
            waiter = self._pending.wait(match)
            try:
                await self._send(frame)
                return await waiter.future
            except ConnectionLost:
                if not retry:
                    raise
            finally:
                self._pending.discard(waiter)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task of this connection: cancelled when the connection ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, event: Event) -> None:
        self._hub.emit(event)

    # ------------------------------------------------------------------ machinery

    def _set_state(self, state: State) -> None:
        if state == self._state:
            return
        self._state = state
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        log.info("%s: %s", self.url, state)
        self._emit({"type": "state", "state": state})

    async def _run(self) -> None:
        try:
            await self._reconnect_loop()
        except Exception:  # a bug, not the network: stop where it shows
            log.exception("%s: the client failed", self.url)
            self._end_session(ClientClosed(1011, "client error"))
            self._finish(1011, "client error")

    async def _reconnect_loop(self) -> None:
        attempt = 0
        while True:
            welcomed, code, reason = await self._session()
            if code not in RECONNECT_CODES:
                self._end_session(ClientClosed(code, reason))
                self._finish(code, reason)
                return
            self._end_session(ConnectionLost(code, reason))
            log.info("%s: connection lost (%d %s)", self.url, code, reason)
            self._emit({"type": "close", "code": code, "reason": reason, "reconnect": True})
            self._set_state("reconnecting")
            if welcomed:
                attempt = 0
            await asyncio.sleep(backoff_delay(attempt, self._base_backoff_s, self._max_backoff_s))
            attempt += 1

    async def _session(self) -> tuple[bool, int, str]:
        """One connection, from the upgrade to its end: (welcomed, close code, reason)."""
        welcomed = False
        headers = dict(self._extra_headers)
        if self.token_in_header:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with ws_connect(
                self.url,
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                additional_headers=headers,
                open_timeout=self._open_timeout_s,
                close_timeout=_CLOSE_TIMEOUT_S,
                ping_interval=None,
                max_size=MAX_FRAME_BYTES,
                compression=self._compression,
            ) as ws:
                self._ws = ws
                try:
                    await ws.send(self._hello())
                    welcome = parse_welcome(await recv_within(ws, self._open_timeout_s))
                    welcomed = self._welcomed_before = True
                    self.welcome = welcome
                    await self._on_welcome(welcome)
                    self._set_state("open")
                    self._emit(welcome)
                    heartbeat = max(_MIN_HEARTBEAT_S, self._heartbeat_s or welcome["heartbeat_s"])
                    self._last_frame_at = asyncio.get_running_loop().time()
                    keepalive_task = asyncio.create_task(
                        keepalive(ws, heartbeat, lambda: self._last_frame_at, self.url)
                    )
                    try:
                        code, reason = await self._read(ws)
                        if keepalive_task.done() and keepalive_task.result():
                            reason = "heartbeat timeout"
                    finally:
                        keepalive_task.cancel()
                    return welcomed, code, reason
                finally:
                    self._ws = None
        except ConnectionClosed as e:
            return (welcomed, *close_of(e))
        except ConnectionLost as e:
            return welcomed, e.code or ABNORMAL, e.reason
        except InvalidStatus as e:
            return (welcomed, *refused(e.response.status_code, self._welcomed_before))
        except NotWelcomed:
            return welcomed, PROTOCOL_ERROR, "expected a welcome frame"
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as e:
            return welcomed, ABNORMAL, type(e).__name__

    def _hello(self) -> str:
        token = None if self.token_in_header else self.token
        return hello_frame(self.client_name, token, self._resume())

    async def _read(self, ws: ClientConnection) -> tuple[int, str]:
        """Dispatch frames until the connection ends; returns its close code and reason."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as e:
                return close_of(e)
            self._last_frame_at = loop.time()
            await self._dispatch(raw)

    async def _dispatch(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            log.warning("%s: ignored a frame that is not a JSON object with a type", self.url)
            return
        if frame["type"] == "pong":
            return
        answered = self._pending.answer(frame)
        consumed = await self._handle(frame)
        if frame["type"] == "error" or not (answered or consumed):
            self._emit(frame)

    def _end_session(self, error: ClientClosed | ConnectionLost) -> None:
        self._pending.fail(error)
        for task in self._tasks:
            task.cancel()
        self._on_session_end()

    def _finish(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        closed = ClientClosed(code, reason)
        log.info("%s: closed (%d %s)", self.url, code, reason)
        self._on_closed(closed)
        self._set_state("closed")
        self._emit({"type": "close", "code": code, "reason": reason, "reconnect": False})
        self._hub.queue.close(closed)
