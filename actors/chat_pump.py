"""The chat endpoint's pump: join with resume, ordered delivery by offset, gap filling."""

from __future__ import annotations

import time
from typing import Any

from actors.fanout import Outgoing
from actors.pump import RESYNC, Pump
from confide.errors import CloseCode, CloseConnection
from confide.protocol import (
    ChatMessage,
    End,
    Frame,
    HistoryRequest,
    Resume,
    StatusUpdate,
    Welcome,
)


class ChatPump(Pump):
    endpoint = "chat"

    def __init__(self, *args: Any, session_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_id = session_id
        self.topic = f"chat:{session_id}"
        self.host = self.core.directory.host_for(self.topic)
        self.epoch = ""
        self.last_offset = 0

    async def open(self) -> None:
        if not self.who.may_join(self.session_id):
            raise CloseConnection(CloseCode.FORBIDDEN, "not a member of this session")
        self.core.fanout.subscribe(self.topic, self)
        joined = await self._join(self.hello.resume, quiet=False)
        w = joined["welcome"]
        if joined.get("large_frames"):
            # Sessions with encrypted insights carry ciphertexts (~1 MB) in message bodies.
            self.gate.limit = self.core.settings.max_large_frame_bytes
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
            started = time.perf_counter()
            ack = await self.host.call.remote(
                "chat_message", self.session_id, self.conn_id, self.who, frame
            )
            self.core.stats.acked(time.perf_counter() - started)
            self.push_frame(ack)
        elif isinstance(frame, StatusUpdate):
            await self.host.call.remote(
                "chat_status", self.session_id, self.conn_id, self.who, frame.status
            )
        elif isinstance(frame, HistoryRequest):
            self.push_frame(
                await self.host.call.remote("chat_history", self.session_id, frame)
            )
        elif isinstance(frame, End):
            await self.host.call.remote("chat_end", self.session_id, self.conn_id, self.who)

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
                    self.gate.limit = self.core.settings.max_large_frame_bytes
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
        self.core.fanout.unsubscribe(self.topic, self)
        await self.host.call.remote("chat_leave", self.session_id, self.conn_id)
