"""The per-WebSocket pump in a gateway replica: reader, writer, heartbeat, closes.

All protocol decisions come from the core (`confide.connection`, entities on hosts);
this module only moves frames. Each endpoint subclasses `Pump`; a pump sees only its
`PumpContext` (settings, metrics, fan-out, host clients), not the whole replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from actors.directory import Directory
from actors.ray_errors import unwrap
from confide import audit, strictjson
from confide.auth import Principal
from confide.config import Settings
from confide.connection import InboundGate, frame_limit
from confide.errors import CloseCode, CloseConnection, ConfideError, ErrorCode
from confide.metrics import GatewayStats
from confide.protocol import Endpoint, Error, Frame, Hello, Ping, Pong
from gateway.audit import record as record_audit
from gateway.fanout import Fanout, Outgoing
from gateway.transport import bound_inflation, writable

log = logging.getLogger("confide.pump")

RESYNC = object()


@dataclass(frozen=True)
class PumpContext:
    """What a pump may use of its gateway replica."""

    settings: Settings
    stats: GatewayStats
    fanout: Fanout
    hosts: Directory


class Pump:
    endpoint: ClassVar[Endpoint]

    def __init__(
        self, ws: WebSocket, ctx: PumpContext, who: Principal, hello: Hello, conn_id: str
    ) -> None:
        self.ws = ws
        self.ctx = ctx
        self.who = who
        self.hello = hello
        self.conn_id = conn_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue(ctx.settings.send_queue)
        #: Bytes of the frames queued and not yet written (the budget is in bytes: one
        #: frame may be 64 bytes or 8 MiB).
        self.queued_bytes = 0
        self._last_seen = 0.0
        #: Live events taken from the fan-out, until its flush.
        self._taken: list[Outgoing] = []
        #: The writer is rendering an item (which may wait: a catch-up, a resync).
        self._writing = False
        #: `open` is done (welcome and replay sent): live events may be sent directly.
        self._live = False
        self._silence: asyncio.TimerHandle | None = None
        self._closing: asyncio.Future[CloseConnection] = (
            asyncio.get_running_loop().create_future()
        )
        #: Set while the socket takes a frame without waiting (None: not known here).
        self._writable = writable(ws)
        self.gate = InboundGate(
            ctx.settings, self.endpoint, who, time.time(),
            frame_limit(ctx.settings, self.endpoint),
        )

    # --------------------------------------------------------- to override

    async def open(self) -> None:
        """Send `welcome` (and any replay) before live traffic starts."""

    async def handle(self, frame: Frame) -> None:
        """One valid client frame (never `hello` or `ping`)."""

    async def render(self, item: Any) -> None:
        """One queued item: text frames are sent as they are; endpoints handle the rest."""
        if isinstance(item, str):
            await self.send_text(item)

    async def finish(self) -> None:
        """Detach from entities; runs on every exit."""

    # ------------------------------------------------------------ plumbing

    def set_frame_limit(self, limit: int) -> None:
        """Frames over `limit` bytes close 1009 (checked while inflating, where possible)."""
        self.gate.limit = limit
        bound_inflation(self.ws, limit)

    def close_with(self, code: CloseCode | int, reason: str = "") -> None:
        if not self._closing.done():
            self._closing.set_result(CloseConnection(CloseCode(code), reason))

    def push(self, item: Any) -> None:
        """Queue an outbound item; a queue over its budget in frames or in bytes means a
        slow consumer (close 4503). One frame over the byte budget passes an empty queue."""
        size = _size(item)
        if self.queued_bytes and self.queued_bytes + size > self.ctx.settings.send_queue_bytes:
            self._slow()
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._slow()
            return
        self.queued_bytes += size

    def _slow(self) -> None:
        if not self._closing.done():
            self.ctx.stats.slow_consumer(self.endpoint)
        self.close_with(CloseCode.OVERLOADED, "slow consumer")

    def push_frame(self, frame: Frame | dict[str, Any]) -> None:
        data = frame.dump() if isinstance(frame, Frame) else frame
        self.push(strictjson.dumps(data))

    def push_error(self, err: ConfideError) -> None:
        self.ctx.stats.error(self.endpoint, err.code.value)
        self.push_frame(Error(code=err.code.value, message=err.message, id=err.frame_id))

    async def send_text(self, text: str) -> None:
        await self.ws.send_text(text)
        self.ctx.stats.sent(self.endpoint, len(text))

    async def send_frame(self, frame: Frame | dict[str, Any]) -> None:
        data = frame.dump() if isinstance(frame, Frame) else frame
        await self.send_text(strictjson.dumps(data))

    def deliver(self, out: Outgoing) -> bool:
        """Take a live event for this connection until the fan-out's `flush`."""
        if not out.event.for_connection(self.who.user, self.who.role):
            return False
        self._taken.append(out)
        return True

    async def flush(self) -> None:
        """Send the live events taken, in order, straight from the fan-out loop once the
        connection is open (welcome and replay sent) while the writer is idle and its
        queue empty (nothing queued may be overtaken), as long as each can be sent without
        waiting; the rest goes through the queue and the writer."""
        taken, self._taken = self._taken, []
        for i, out in enumerate(taken):
            if not self._live or self._writing or not self.queue.empty() or (
                self._writable is not None and not self._writable.is_set()
            ):
                # A client that does not read (its socket is full) waits in its own
                # queue, under its byte budget (4503), never in the fan-out's loop.
                sent = False
            else:
                try:
                    sent = await self.send_now(out)
                except Exception:  # noqa: BLE001 - the writer meets the same error and closes
                    sent = False
            if not sent:
                for rest in taken[i:]:
                    self.push(rest)
                return

    async def send_now(self, out: Outgoing) -> bool:
        """Send a live event now if that needs no wait (False: leave it to `render`)."""
        await self.send_text(out.text)
        return True

    def resync(self) -> None:
        self.push(RESYNC)

    async def run(self) -> None:
        """Open, then pump until a close; always close with the right code and detach."""
        close: CloseConnection | None = None
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.open()
            self._live = True
            tasks = [
                asyncio.create_task(self._read_loop()),
                asyncio.create_task(self._write_loop()),
            ]
            waiters: set[asyncio.Future[Any]] = {*tasks, self._closing}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if self._closing.done():
                close = self._closing.result()
            else:
                for t in done:
                    exc = t.exception() if not t.cancelled() else None
                    if isinstance(exc, CloseConnection):
                        close = exc
                    elif exc is not None and not isinstance(exc, WebSocketDisconnect):
                        raise exc
        except WebSocketDisconnect:
            close = None
        except Exception as exc:
            inner = unwrap(exc)
            if isinstance(inner, CloseConnection):
                close = inner
            else:
                log.error("connection failed: %s", type(inner).__name__, exc_info=True)
                close = CloseConnection(CloseCode.INTERNAL, "internal error")
        finally:
            if self._silence is not None:
                self._silence.cancel()
            for t in tasks:
                t.cancel()
            try:  # detach first: this task may itself be cancelled at its next await
                await self.finish()
            except Exception:  # noqa: BLE001 - detaching is best effort; entities expire
                log.warning("detach failed for a %s connection", self.endpoint)
            await asyncio.gather(*tasks, return_exceptions=True)
        if close is not None:
            await self.close(close)

    async def close(self, close: CloseConnection) -> None:
        self.audit_close(close)
        self.ctx.stats.closed(self.endpoint, int(close.close_code))
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):  # the peer may be gone already
                await self.ws.close(int(close.close_code), close.reason)

    def _watch_silence(self) -> None:
        """Close a connection silent for 2 × heartbeat_s (4408): one timer per connection,
        re-armed when it fires, instead of a timeout (a task) per frame received."""
        loop = asyncio.get_running_loop()
        limit = 2 * self.ctx.settings.heartbeat_s
        idle = loop.time() - self._last_seen
        if idle >= limit:
            self.close_with(CloseCode.TIMEOUT, "heartbeat timeout")
        else:
            self._silence = loop.call_later(limit - idle, self._watch_silence)

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        self._watch_silence()
        while True:
            msg = await self.ws.receive()
            self._last_seen = loop.time()
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            text = msg.get("text")
            raw: str | bytes = text if text is not None else msg.get("bytes") or b""
            self.ctx.stats.received(self.endpoint, len(raw))
            frame: Frame | None = None
            try:
                frame = self.gate.check(raw, time.time())
                if isinstance(frame, Ping):
                    self.push_frame(Pong(id=frame.id))
                else:
                    await self.handle(frame)
            except Exception as exc:
                inner = unwrap(exc)
                if isinstance(inner, ConfideError):
                    if inner.frame_id is None:  # errors raised on hosts know no frame
                        inner.frame_id = getattr(frame, "id", None)
                    if inner.code is ErrorCode.FORBIDDEN and frame is not None:
                        self.audit_refused(frame)
                    self.push_error(inner)
                elif isinstance(inner, CloseConnection):
                    raise inner from None
                else:
                    raise

    async def _write_loop(self) -> None:
        while True:
            item = await self.queue.get()
            self._writing = True
            try:
                await self.render(item)
            finally:
                self._writing = False
                self.queued_bytes -= _size(item)

    # --------------------------------------------------------- audit trail

    def audit_target(self) -> tuple[str, str]:
        """(action, target) recorded when this connection is refused (4401, 4403)."""
        return audit.CONNECT, self.endpoint

    def audit_frame(self, frame: Frame) -> tuple[str, str]:
        """(action, target) recorded when a frame is refused (`forbidden`)."""
        return f"{self.endpoint}.{getattr(frame, 'type', 'frame')}", self.endpoint

    def audit_close(self, close: CloseConnection) -> None:
        if close.close_code == CloseCode.FORBIDDEN:
            action, target = self.audit_target()
            record_audit(self.ctx.hosts, self.who.user, action, target, "denied")
        elif close.close_code == CloseCode.UNAUTHORIZED:  # e.g. the token expired meanwhile
            record_audit(self.ctx.hosts, self.who.user, audit.CONNECT, self.audit_target()[1],
                         "unauthenticated")

    def audit_refused(self, frame: Frame) -> None:
        action, target = self.audit_frame(frame)
        record_audit(self.ctx.hosts, self.who.user, action, target, "denied")


def _size(item: Any) -> int:
    """Bytes an outbound item holds: its frame's text (ASCII JSON: one byte a character)."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, Outgoing):
        return len(item.text)
    return 0
