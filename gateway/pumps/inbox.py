"""The notifications endpoint's pump: welcome with counts, backlog, then live ones."""

from __future__ import annotations

from typing import Any

from actors.host.messages import Attached
from confide.protocol import Frame, InboxWelcome, ListRequest, NotificationAck
from gateway.fanout import Outgoing
from gateway.pumps.base import RESYNC, Pump


class InboxPump(Pump):
    endpoint = "notifications"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topic = f"inbox:{self.who.user}"
        self.host = self.ctx.hosts.host_for(self.topic)

    async def _attach(self) -> Attached:
        return await self.host.inbox_attach(self.who.user, self.conn_id)

    async def open(self) -> None:
        self.ctx.fanout.subscribe(self.topic, self)
        attached = await self._attach()
        await self.send_frame(
            InboxWelcome(user=self.who.user, role=self.who.role,
                    heartbeat_s=self.ctx.settings.heartbeat_s,
                    pending=attached.pending, unread=attached.unread)
        )
        for item in attached.items:
            await self.send_frame(item)

    async def handle(self, frame: Frame) -> None:
        if isinstance(frame, NotificationAck):
            await self.host.inbox_ack(self.who.user, frame.id, frame.state)
        elif isinstance(frame, ListRequest):
            self.push_frame(await self.host.inbox_list(
                self.who.user, frame.state, frame.limit, frame.before))

    async def render(self, item: Any) -> None:
        if item is RESYNC:
            # The host restarted: re-attach; undelivered ones come again (at-least-once).
            for frame in (await self._attach()).items:
                await self.send_frame(frame)
        elif isinstance(item, Outgoing):
            await self.send_text(item.text)
        else:
            await super().render(item)

    async def finish(self) -> None:
        self.ctx.fanout.unsubscribe(self.topic, self)
        await self.host.inbox_detach(self.who.user, self.conn_id)
