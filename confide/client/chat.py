"""`ChatClient`: one chat session (`/ws/chat/{session_id}`), with an outbox and resume.

Delivery rules (docs/sdk.md, "Chat"), decided by the core's `DeliveryCursor`:
- Messages are events in offset order, each once: only offsets above `last_offset` are
  delivered, and `last_offset` follows them. A live message after a gap (which a conforming
  server never sends) waits while the missing ones are fetched with `history`, as below.
- `send_message` puts the message in an outbox, sends it when open, and sends it again with
  the same id after every reconnect until its `ack` arrives (the server acks a repeated id
  with the same offset and does not broadcast it twice).
- A reconnect sends `hello.resume` with (`last_offset`, `epoch`). With `recovered: true` the
  server replays what was missed. With `recovered: false` in the same epoch (the position is
  older than retained history), the client pages back through `history` to fetch every
  retained message after `last_offset`, holds live messages meanwhile, then delivers both in
  order; what is no longer retained is lost, and the `welcome` event says `recovered: false`.
  In another epoch (or if the server's log is behind `last_offset`) the old positions mean
  nothing: `last_offset` becomes `welcome.offset` and the app reloads with `request_history`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import uuid4

from typing_extensions import Unpack, assert_never

from confide.client.connection import Connection
from confide.client.errors import ClientClosed, ConnectionLost, ServerError
from confide.client.events import Event, log
from confide.client.options import ConnectionOptions
from confide.cursor import Deliver, DeliveryCursor, Gap, Skip
from confide.protocol import ChatMessage, End, HistoryRequest, Status, StatusUpdate

#: Messages fetched per `history` request while catching up after `recovered: false`.
CATCH_UP_PAGE = 200
#: Acks (and failures) remembered for `wait_acked` after the message left the outbox.
_RESULTS_KEPT = 10_000
_RATE_LIMIT_RETRY_S = 1.0

_Result = int | ServerError | ClientClosed


def session_from_url(url: str) -> str:
    """The `{session_id}` of a `.../ws/chat/{session_id}` URL."""
    parts = urlsplit(url).path.rstrip("/").split("/")
    if len(parts) < 3 or parts[-3:-1] != ["ws", "chat"] or not parts[-1]:
        raise ValueError("chat URLs end with /ws/chat/{session_id}")
    return unquote(parts[-1])


def _offset(frame: Event) -> int:
    value = frame.get("offset")
    return value if isinstance(value, int) else -1


def _is_history(frame: Event) -> bool:
    return bool(frame["type"] == "history")


class ChatClient(Connection):
    """A chat session client. Events: `message`, `status`, `presence`, `insight`, `ended`,
    `error`, `welcome`, `state`, `close`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        session_id: str | None = None,
        **options: Unpack[ConnectionOptions],
    ) -> None:
        super().__init__(url, token, **options)
        self.session_id = session_id or session_from_url(url)
        #: Where delivery stands: the epoch and the offset of the last message delivered.
        self.cursor = DeliveryCursor()
        self._outbox: dict[str, Event] = {}
        self._results: OrderedDict[str, _Result] = OrderedDict()
        self._ack_waiters: dict[str, list[asyncio.Future[_Result]]] = {}
        self._catching_up = False
        self._held: list[Event] = []

    @property
    def epoch(self) -> str | None:
        """The log's epoch, from the last `welcome` (None before the first)."""
        return self.cursor.epoch

    @epoch.setter
    def epoch(self, epoch: str | None) -> None:
        self.cursor.epoch = epoch

    @property
    def last_offset(self) -> int:
        """The offset of the last message delivered (or `welcome.offset` of a fresh start)."""
        return self.cursor.last

    @last_offset.setter
    def last_offset(self, offset: int) -> None:
        self.cursor.last = offset

    @property
    def pending(self) -> list[str]:
        """Ids of the messages sent but not yet acked, oldest first."""
        return list(self._outbox)

    async def send_message(
        self, body: dict[str, Any], encrypted: bool = False, id: str | None = None
    ) -> str:
        """Queue a message and return its id at once; it is sent (again after each
        reconnect) until acked. `encrypted` bodies are `{"ciphertext", "alg", "key_id"}`."""
        message_id = id or uuid4().hex
        frame = ChatMessage(type="message", id=message_id, body=body, encrypted=encrypted).dump()
        if message_id in self._outbox or message_id in self._results:
            return message_id
        self._outbox[message_id] = frame
        if self._is_open():
            with contextlib.suppress(ConnectionLost):  # sent again after the reconnect
                await self._send(frame)
        return message_id

    async def wait_acked(self, id: str, timeout: float | None = None) -> int:
        """The offset the server gave message `id`. Raises `ServerError` if the server refused
        it, `ClientClosed` if the client closed first, `KeyError` for an unknown id."""
        result = self._results.get(id)
        if result is None:
            if id not in self._outbox:
                raise KeyError(id)
            future: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
            waiters = self._ack_waiters.setdefault(id, [])
            waiters.append(future)
            try:
                result = await asyncio.wait_for(future, timeout)
            finally:
                if future in waiters:
                    waiters.remove(future)
        if isinstance(result, Exception):
            raise result
        return result

    async def send_status(self, status: Status) -> None:
        """Tell the others `online|typing|idle|away`. Ephemeral: dropped while offline."""
        frame = StatusUpdate(type="status", status=status).dump()
        if self._is_open():
            with contextlib.suppress(ConnectionLost):
                await self._send(frame)

    async def request_history(
        self, before: int | None = None, limit: int = 50, timeout: float | None = None
    ) -> Event:
        """The `history` frame: up to `limit` retained messages with offset < `before`
        (default: the newest), oldest first, and `complete`. Does not touch `last_offset`."""
        frame = HistoryRequest(type="history", before=before, limit=limit).dump()
        return await self._request(frame, _is_history, timeout=timeout)

    async def end(self) -> None:
        """End the session (therapists): everyone gets `ended`, then the server closes 4410."""
        await self._send_when_open(End(type="end").dump())

    # ------------------------------------------------------------------ hooks

    def _resume(self) -> dict[str, Any] | None:
        if self.cursor.epoch is None:
            return None
        return {"offset": self.cursor.last, "epoch": self.cursor.epoch}

    async def _on_welcome(self, welcome: Event) -> None:
        epoch, offset = str(welcome.get("epoch", "")), welcome.get("offset", 0)
        offset = offset if isinstance(offset, int) else 0
        if not self.cursor.continues(epoch, offset):
            self.cursor.reset(epoch, offset)
        elif welcome.get("recovered") is False:
            self._start_catch_up(self.cursor.last, offset)
        sent: set[str] = set()
        while todo := [f for i, f in self._outbox.items() if i not in sent]:
            for frame in todo:
                sent.add(frame["id"])
                await self._send(frame)

    async def _handle(self, frame: Event) -> bool:
        kind = frame["type"]
        if kind == "message":
            return not self._take(frame)
        if kind == "ack":
            self._on_ack(frame)
            return True
        if kind == "error":
            self._on_error(frame)
        return False

    def _on_session_end(self) -> None:
        self._catching_up = False
        self._held = []

    def _on_closed(self, closed: ClientClosed) -> None:
        waiters, self._ack_waiters = self._ack_waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(closed)

    # ------------------------------------------------------------------ internals

    def _take(self, frame: Event) -> bool:
        """Whether to deliver message `frame` now (the cursor moves past it). If not, it is a
        duplicate, or it is held until a catch-up has delivered the messages before it."""
        if self._catching_up:
            self._held.append(frame)
            return False
        decision = self.cursor.decide(_offset(frame))
        match decision:
            case Skip():
                return False
            case Deliver(offset):
                self.cursor.delivered(offset)
                return True
            case Gap(after, upto):
                self._held.append(frame)
                self._start_catch_up(after, upto)
                return False
            case _:
                assert_never(decision)

    def _start_catch_up(self, since: int, upto: int) -> None:
        self._catching_up = True
        self._spawn(self._catch_up(since, upto))

    def _on_ack(self, frame: Event) -> None:
        message_id, offset = frame.get("id"), frame.get("offset")
        if (
            isinstance(message_id, str)
            and isinstance(offset, int)
            and self._outbox.pop(message_id, None) is not None
        ):
            self._settle(message_id, offset)

    def _on_error(self, frame: Event) -> None:
        message_id = frame.get("id")
        if not isinstance(message_id, str) or message_id not in self._outbox:
            return
        if frame.get("code") == "rate_limited":
            self._spawn(self._resend_later(message_id))
            return
        del self._outbox[message_id]
        self._settle(message_id, ServerError.from_frame(frame))

    def _settle(self, message_id: str, result: _Result) -> None:
        self._results[message_id] = result
        while len(self._results) > _RESULTS_KEPT:
            self._results.popitem(last=False)
        for future in self._ack_waiters.pop(message_id, []):
            if not future.done():
                future.set_result(result)

    async def _resend_later(self, message_id: str) -> None:
        await asyncio.sleep(_RATE_LIMIT_RETRY_S)
        frame = self._outbox.get(message_id)
        if frame is not None:
            with contextlib.suppress(ConnectionLost):  # sent again after the reconnect
                await self._send(frame)

    async def _catch_up(self, since: int, upto: int) -> None:
        """After `recovered: false` or a gap: deliver the retained messages in (since, upto],
        then the live ones held meanwhile, in order."""
        try:
            missed = await self._fetch_range(since, upto)
        except (ConnectionLost, ClientClosed):
            return  # the next connection catches up again from the same `last_offset`
        except asyncio.TimeoutError:
            log.warning("%s: could not fetch the messages after offset %d", self.url, since)
            missed = []
        self._catching_up = False
        for message in self.cursor.cover(missed, _offset, upto).messages:
            self.cursor.delivered(_offset(message))
            self._emit(message)
        self.cursor.delivered(upto)  # what is no longer retained is lost
        held, self._held = self._held, []
        for message in sorted(held, key=_offset):  # may start another catch-up, and hold
            if self._take(message):
                self._emit(message)

    async def _fetch_range(self, since: int, upto: int) -> list[Event]:
        missed: list[Event] = []
        before = upto + 1
        while before - 1 > since:
            page = await self.request_history(before=before, limit=CATCH_UP_PAGE)
            messages = [m for m in page.get("messages", []) if isinstance(m, dict)]
            missed.extend(m for m in messages if since < _offset(m) < before)
            lowest = min(map(_offset, messages), default=before)
            if page.get("complete") or lowest >= before:
                break
            before = lowest
        return missed
