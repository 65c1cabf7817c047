"""`NotificationsClient`: the user's inbox (`/ws/notifications`).

Delivery is at least once: the server sends again every notification not acked as
`delivered`. The client acks each one on arrival (`auto_ack`), acks repeats again, and emits
each id once per client. Acks made while offline are sent after the next `welcome`.
"""

from __future__ import annotations

import builtins
from collections import OrderedDict
from typing import Literal

from typing_extensions import Unpack

from confide.client.connection import Connection
from confide.client.errors import ConnectionLost, ServerError
from confide.client.events import Event
from confide.client.options import ConnectionOptions
from confide.protocol import AckState, ListRequest, NotificationAck

#: Notification ids remembered to drop repeats.
_SEEN_KEPT = 10_000


def _answers_list(frame: Event) -> bool:
    """`list` is answered by `notifications`, or by an `error` without id (the only request
    on this endpoint that carries no id)."""
    return frame["type"] == "notifications" or (
        frame["type"] == "error" and frame.get("id") is None
    )


class NotificationsClient(Connection):
    """An inbox client. Events: `notification` (each id once), `error`, `welcome` (with the
    `pending` and `unread` counts), `state`, `close`."""

    def __init__(
        self, url: str, token: str, *, auto_ack: bool = True, **options: Unpack[ConnectionOptions]
    ) -> None:
        super().__init__(url, token, **options)
        self.auto_ack = auto_ack
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._unsent: dict[str, AckState] = {}

    async def ack(self, id: str, state: AckState = "delivered") -> None:
        """Acknowledge notification `id` as `delivered` or `read`."""
        frame = NotificationAck(type="ack", id=id, state=state).dump()
        if self._is_open():
            try:
                return await self._send(frame)
            except ConnectionLost:
                pass
        if self._unsent.get(id) != "read":
            self._unsent[id] = state

    async def mark_read(self, id: str) -> None:
        await self.ack(id, "read")

    async def _on_welcome(self, welcome: Event) -> None:
        while self._unsent:
            id, state = next(iter(self._unsent.items()))
            await self._send(NotificationAck(type="ack", id=id, state=state).dump())
            if self._unsent.get(id) == state:
                del self._unsent[id]

    async def _handle(self, frame: Event) -> bool:
        id = frame.get("id")
        if frame["type"] != "notification" or not isinstance(id, str):
            return False
        repeat = id in self._seen
        self._seen[id] = None
        self._seen.move_to_end(id)
        while len(self._seen) > _SEEN_KEPT:
            self._seen.popitem(last=False)
        if self.auto_ack:
            await self.ack(id)
        return repeat

    async def list(
        self,
        state: Literal["unread", "all"] = "unread",
        limit: int = 50,
        before: str | None = None,
        timeout: float | None = None,
    ) -> builtins.list[Event]:
        """Notifications newest first, each with its `state`; `before` pages on from an id."""
        request = ListRequest(type="list", state=state, limit=limit, before=before).dump()
        answer = await self._request(request, _answers_list, timeout=timeout)
        if answer["type"] == "error":
            raise ServerError.from_frame(answer)
        items = answer.get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, builtins.list) else []
