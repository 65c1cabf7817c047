"""The chat endpoint's pump: join with resume, ordered delivery by offset, gap filling."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actors.fanout import Outgoing
from actors.pump import RESYNC, Pump
from actors.ray_errors import unwrap
from confide.connection import frame_limit
from confide.errors import CloseCode, CloseConnection, ConfideError, Internal
from confide.protocol import (
    ChatMessage,
    End,
    Frame,
    HistoryRequest,
    Resume,
    StatusUpdate,
    Welcome,
)

log = logging.getLogger("confide.chat")

#: Messages of one connection sent to the host in one call at most.
MAX_BATCH = 64


class ChatPump(Pump):
    endpoint = "chat"

    def __init__(self, *args: Any, session_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_id = session_id
        self.topic = f"chat:{session_id}"
        self.host = self.core.directory.host_for(self.topic)
        self.epoch = ""
        self.last_offset = 0
        self._outbox: list[tuple[ChatMessage, float]] = []
        self._sender: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if not self.who.may_join(self.session_id):
            raise CloseConnection(CloseCode.FORBIDDEN, "not a member of this session")
        self.core.fanout.subscribe(self.topic, self)
        joined = await self._join(self.hello.resume, quiet=False)
        w = joined["welcome"]
        if joined.get("large_frames"):
            # Sessions with encrypted insights carry ciphertexts (~1 MB) in message bodies.
            self.gate.limit = frame_limit(self.core.settings, "chat", large=True)
        await self.send_frame(
            Welcome(user=self.who.user, role=self.who.role,
                    heartbeat_s=self.core.settings.heartbeat_s, **w)
        )
        self.epoch = w["epoch"]
        self.last_offset = joined["replay_after"] if w["recovered"] and joined[
            "replay_after"] is not None else w["offset"]
        if self.hello.resume is not None:
            self.core.stats.resumed(bool(w["recovered"]))
        await self._catch_up(joined["upto"])

    async def _join(self, resume: Resume | None, quiet: bool) -> dict[str, Any]:
        result: dict[str, Any] = await self.host.call.remote(
            "chat_join", self.session_id, self.conn_id, self.who, resume, quiet
        )
        return result

    async def _catch_up(self, upto: int) -> None:
        """Send every stored message in (last_offset, upto], in order."""
        while self.last_offset < upto:
            page: list[dict[str, Any]] = await self.host.call.remote(
                "chat_replay", self.session_id, self.last_offset, upto
            )
            if not page:
                # Trimmed by retention meanwhile: nothing more to send below `upto`.
                self.last_offset = upto
                break
            for frame in page:
                await self.send_frame(frame)
                self.last_offset = frame["offset"]

    async def handle(self, frame: Frame) -> None:
        if isinstance(frame, ChatMessage):
            # Messages go to the host in batches, in order, while the reader reads on:
            # one host call per batch, and pings are answered at once meanwhile.
            self._outbox.append((frame, time.perf_counter()))
            if self._sender is None or self._sender.done():
                self._sender = asyncio.create_task(self._send_messages())
            return
        if self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)  # other frames come after earlier messages
        if isinstance(frame, StatusUpdate):
            await self.host.call.remote(
                "chat_status", self.session_id, self.conn_id, self.who, frame.status
            )
        elif isinstance(frame, HistoryRequest):
            self.push_frame(
                await self.host.call.remote("chat_history", self.session_id, frame)
            )
        elif isinstance(frame, End):
            await self.host.call.remote("chat_end", self.session_id, self.conn_id, self.who)

    async def _send_messages(self) -> None:
        while self._outbox:
            batch = self._outbox[:MAX_BATCH]
            del self._outbox[:MAX_BATCH]
            try:
                answers: list[dict[str, Any]] = await self.host.call.remote(
                    "chat_messages", self.session_id, self.conn_id, self.who,
                    [m for m, _ in batch],
                )
            except Exception as exc:  # noqa: BLE001 - every message of the batch is answered
                inner = unwrap(exc)
                if isinstance(inner, CloseConnection):
                    self.close_with(inner.close_code, inner.reason)
                    return
                if not isinstance(inner, ConfideError):
                    log.error("sending messages failed: %s", type(inner).__name__)
                    inner = Internal("message could not be stored")
                for m, _ in batch:
                    self.push_error(type(inner)(inner.message, frame_id=m.id))
                continue
            now = time.perf_counter()
            for (_, received), answer in zip(batch, answers, strict=True):
                if answer.get("type") == "ack":
                    self.core.stats.acked(now - received)
                else:
                    self.core.stats.error(self.endpoint, str(answer.get("code")))
                self.push_frame(answer)

    async def render(self, item: Any) -> None:
        if item is RESYNC:
            joined = await self._join(Resume(offset=self.last_offset, epoch=self.epoch),
                                      quiet=True)
            if joined["welcome"]["epoch"] != self.epoch:
                raise CloseConnection(CloseCode.SERVICE_RESTART, "session history reset")
            await self._catch_up(joined["upto"])
        elif isinstance(item, Outgoing):
            frame = item.event.frame
            if frame.get("type") == "_config":  # internal: the session's set-up changed
                if frame.get("large_frames"):
                    self.gate.limit = frame_limit(self.core.settings, "chat", large=True)
                return
            if frame.get("type") == "message":
                offset = int(frame["offset"])
                if offset <= self.last_offset:
                    return  # already sent (replay or resync)
                if offset > self.last_offset + 1:
                    await self._catch_up(offset - 1)
                await self.send_text(item.text)
                self.last_offset = offset
            else:
                await self.send_text(item.text)
            if item.event.close_code is not None:
                raise CloseConnection(CloseCode(item.event.close_code))
        else:
            await super().render(item)

    async def finish(self) -> None:
        if self._sender is not None:
            self._sender.cancel()  # what reached the host commits; the client resends
        self.core.fanout.unsubscribe(self.topic, self)
        await self.host.call.remote("chat_leave", self.session_id, self.conn_id)
