"""The chat endpoint's pump: join with resume, ordered delivery by offset, gap filling."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actors.host.messages import ChatAnswer, ChatItem, Joined
from confide import audit
from confide.connection import frame_limit
from confide.cursor import Deliver, DeliveryCursor, Gap, Skip
from confide.errors import CloseCode, CloseConnection
from confide.protocol import (
    Ack,
    ChatMessage,
    ChatWelcome,
    End,
    Frame,
    HistoryRequest,
    Resume,
    StatusUpdate,
)
from gateway.fanout import Outgoing
from gateway.pumps.base import RESYNC, Pump

log = logging.getLogger("confide.chat")


class ChatPump(Pump):
    endpoint = "chat"

    def __init__(self, *args: Any, session_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_id = session_id
        self.topic = f"chat:{session_id}"
        self.host = self.ctx.hosts.host_for(self.topic)
        #: What this connection was sent: offsets in order, no gap, no duplicate.
        self.cursor = DeliveryCursor()
        #: Messages sent to the host and not answered yet; other frames wait for them.
        self._unanswered = 0
        self._drained = asyncio.Event()
        self._drained.set()

    async def open(self) -> None:
        if not self.who.may_join(self.session_id):
            raise CloseConnection(CloseCode.FORBIDDEN, "not a member of this session")
        self.ctx.fanout.subscribe(self.topic, self)
        joined = await self._join(self.hello.resume, quiet=False)
        w = joined.welcome
        if joined.large_frames:
            # Sessions with encrypted insights carry ciphertexts (~1 MB) in message bodies.
            self.set_frame_limit(frame_limit(self.ctx.settings, "chat", large=True))
        await self.send_frame(
            ChatWelcome(user=self.who.user, role=self.who.role,
                    heartbeat_s=self.ctx.settings.heartbeat_s, **w)
        )
        replay = bool(w["recovered"]) and joined.replay_after is not None
        self.cursor.reset(w["epoch"], joined.replay_after if replay else w["offset"])  # type: ignore[arg-type]
        if self.hello.resume is not None:
            self.ctx.stats.resumed(bool(w["recovered"]))
        await self._catch_up(joined.upto)

    async def _join(self, resume: Resume | None, quiet: bool) -> Joined:
        return await self.host.chat_join(self.session_id, self.conn_id, self.who, resume, quiet)

    async def _catch_up(self, upto: int) -> None:
        """Send every stored message in (cursor.last, upto], in order."""
        while self.cursor.last < upto:
            page = await self.host.chat_replay(self.session_id, self.cursor.last, upto)
            fresh = self.cursor.cover(page, lambda f: int(f["offset"])).messages
            if not fresh:
                # Trimmed by retention meanwhile: nothing more to send below `upto`.
                self.cursor.delivered(upto)
                break
            for frame in fresh:
                await self.send_frame(frame)
                self.cursor.delivered(int(frame["offset"]))

    async def handle(self, frame: Frame) -> None:
        if isinstance(frame, ChatMessage):
            # The replica's host client batches every connection's messages (one call in
            # flight per host); the reader reads on, and answers pings meanwhile.
            received = time.perf_counter()
            self._unanswered += 1
            self._drained.clear()
            self.host.send_message(
                ChatItem(self.session_id, self.conn_id, self.who, frame),
                lambda answer: self._answered(answer, received),
            )
            return
        await self._drained.wait()  # other frames come after earlier messages
        if isinstance(frame, StatusUpdate):
            await self.host.chat_status(self.session_id, self.conn_id, self.who, frame.status)
        elif isinstance(frame, HistoryRequest):
            self.push_frame(await self.host.chat_history(self.session_id, frame))
        elif isinstance(frame, End):
            await self.host.chat_end(self.session_id, self.conn_id, self.who)

    def _answered(self, answer: ChatAnswer, received: float) -> None:
        self._unanswered -= 1
        if self._unanswered == 0:
            self._drained.set()
        if isinstance(answer, CloseConnection):
            self.close_with(answer.close_code, answer.reason)
            return
        if isinstance(answer, Ack):
            self.ctx.stats.acked(time.perf_counter() - received)
        else:
            self.ctx.stats.error(self.endpoint, answer.code)
        self.push_frame(answer)

    async def send_now(self, out: Outgoing) -> bool:
        event = out.event
        if event.control is not None or event.close_code is not None:
            return False  # changes the connection: the writer handles it
        if event.frame.get("type") == "message":
            offset = int(event.frame["offset"])
            match self.cursor.decide(offset):
                case Skip():
                    return True
                case Gap():
                    return False  # a catch-up from the store waits: the writer does it
                case Deliver():
                    pass
            await self.send_text(out.text)
            self.cursor.delivered(offset)
            return True
        await self.send_text(out.text)
        return True

    async def render(self, item: Any) -> None:
        if item is RESYNC:
            resume = Resume(offset=self.cursor.last, epoch=self.cursor.epoch or "")
            joined = await self._join(resume, quiet=True)
            if not self.cursor.continues(joined.welcome["epoch"], joined.upto):
                raise CloseConnection(CloseCode.SERVICE_RESTART, "session history reset")
            await self._catch_up(joined.upto)
        elif isinstance(item, Outgoing):
            event = item.event
            if event.control == "large_frames":  # the session's set-up changed
                self.set_frame_limit(frame_limit(self.ctx.settings, "chat", large=True))
                return
            if event.close_code is not None:  # e.g. `ended`: the frame, then the close
                await self.send_text(item.text)
                raise CloseConnection(CloseCode(event.close_code))
            if not await self.send_now(item):
                # A gap before this message: fill it from the store, then send it.
                await self._catch_up(int(event.frame["offset"]) - 1)
                await self.send_now(item)
        else:
            await super().render(item)

    async def finish(self) -> None:
        # Messages already queued reach the host and commit; the client resends unacked.
        self.ctx.fanout.unsubscribe(self.topic, self)
        self.host.chat_leave(self.session_id, self.conn_id)

    def audit_target(self) -> tuple[str, str]:
        return audit.SESSION_JOIN, self.session_id

    def audit_frame(self, frame: Frame) -> tuple[str, str]:
        return f"session.{getattr(frame, 'type', 'frame')}", self.session_id
