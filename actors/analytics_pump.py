"""The analytics endpoint's pump: subscriptions to live streams, encrypted submissions."""

from __future__ import annotations

from typing import Any

from actors.fanout import Outgoing
from actors.pump import RESYNC, Pump
from confide.analytics import StreamRef, resolve
from confide.errors import NotFound
from confide.protocol import (
    Frame,
    Submit,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
)


class AnalyticsPump(Pump):
    endpoint = "analytics"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams: dict[str, StreamRef] = {}

    def frame_limit(self) -> int:
        return self.core.settings.max_large_frame_bytes

    async def open(self) -> None:
        await self.send_frame(Welcome(user=self.who.user, role=self.who.role,
                                      heartbeat_s=self.core.settings.heartbeat_s))

    async def _subscribe(self, ref: StreamRef) -> dict[str, Any]:
        self.core.fanout.subscribe(ref.topic, self, ref.route)
        snapshot: dict[str, Any] = await self.core.call(
            ref.route, "stream_subscribe", ref, self.conn_id
        )
        return snapshot

    async def handle(self, frame: Frame) -> None:
        if isinstance(frame, Subscribe):
            ref = resolve(frame.stream, self.who, frame.key_id)
            snapshot = await self._subscribe(ref)
            self.streams[ref.topic] = ref
            self.push_frame(Subscribed(stream=ref.name, key_id=ref.key_id))
            if snapshot:
                self.push_frame(snapshot)
        elif isinstance(frame, Unsubscribe):
            ref = resolve(frame.stream, self.who, frame.key_id)
            if self.streams.pop(ref.topic, None) is None:
                raise NotFound("not subscribed to this stream")
            await self._unsubscribe(ref)
            self.push_frame(Unsubscribed(stream=ref.name, key_id=ref.key_id))
        elif isinstance(frame, Submit):
            await self.submit(frame)

    async def submit(self, frame: Submit) -> None:
        raise NotFound("no such key", frame_id=frame.id)

    async def _unsubscribe(self, ref: StreamRef) -> None:
        self.core.fanout.unsubscribe(ref.topic, self)
        await self.core.call(ref.route, "stream_unsubscribe", ref, self.conn_id)

    async def render(self, item: Any) -> None:
        if item is RESYNC:
            for ref in list(self.streams.values()):
                snapshot = await self._subscribe(ref)
                if snapshot:
                    await self.send_frame(snapshot)
        elif isinstance(item, Outgoing):
            await self.send_text(item.text)
        else:
            await super().render(item)

    async def finish(self) -> None:
        for ref in list(self.streams.values()):
            await self._unsubscribe(ref)
