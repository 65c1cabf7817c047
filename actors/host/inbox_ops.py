"""Notification operations of a host: post, attach, acknowledge, list, status."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.host.base import HostBase
from actors.host.messages import Attached
from confide import audit, inbox
from confide.auth import Principal
from confide.errors import NotFound
from confide.events import Event
from confide.inbox import Inbox, NotificationRequest
from confide.protocol import Notification, Notifications


class InboxOps(HostBase):
    def _inbox_lock(self, user: str) -> asyncio.Lock:
        """Inbox state changes of one user happen one at a time (read, then write)."""
        lock = self._inbox_locks.get(user)
        if lock is None:
            lock = self._inbox_locks[user] = asyncio.Lock()
        return lock

    async def inbox_post(
        self, producer: Principal, req: NotificationRequest, idempotency_key: str | None
    ) -> dict[str, str]:
        inbox.check_producer(producer.role)
        rec = inbox.new_record(req, producer.user, idempotency_key, self.clock.time())
        stored, created = await asyncio.to_thread(self.store.insert_notification, rec)
        if created and stored.user in self._inboxes:
            async with self._inbox_lock(stored.user):
                # A connecting tab may have sent (and the user acked) it meanwhile.
                fresh = await asyncio.to_thread(self.store.get_notification, stored.id)
                box = self._inboxes.get(stored.user)
                live = box.send_live(fresh, self.clock.time()) if box and fresh else None
                if fresh is not None and live is not None:
                    await asyncio.to_thread(self.store.update_notifications, [fresh])
                    self.publish(Event(f"inbox:{fresh.user}", live))
        return {"id": stored.id, "state": "queued"}

    async def inbox_attach(self, user: str, conn_id: str) -> Attached:
        """A connection opens: counts, then every undelivered notification, oldest first."""
        box = self._inboxes.setdefault(user, Inbox(user))
        box.attach(conn_id)
        now = self.clock.time()
        async with self._inbox_lock(user):
            records = await asyncio.to_thread(self.store.undelivered_notifications, user, now)
            items = box.backlog(records, now)
            if records:
                await asyncio.to_thread(self.store.update_notifications, records)
            pending, unread = await asyncio.to_thread(self.store.notification_counts, user, now)
        return Attached(pending, unread, items)

    async def inbox_detach(self, user: str, conn_id: str) -> None:
        box = self._inboxes.get(user)
        if box is not None:
            box.detach(conn_id)
            if not box.online:
                del self._inboxes[user]

    async def inbox_ack(self, user: str, notification_id: str, state: str) -> None:
        async with self._inbox_lock(user):
            rec = await asyncio.to_thread(self.store.get_notification, notification_id)
            if rec is None:
                raise NotFound("no such notification")
            if inbox.acknowledge(rec, user, state, self.clock.time()):
                await asyncio.to_thread(self.store.update_notifications, [rec])
                if state == "read":
                    self.audit(user, audit.NOTIFICATION_READ, notification_id)

    async def inbox_list(
        self, user: str, state: str, limit: int, before: str | None
    ) -> Notifications:
        records = await asyncio.to_thread(
            self.store.list_notifications, user, state == "unread", limit, before
        )
        return Notifications(items=[Notification.model_validate(inbox.frame(r, True))
                                    for r in records])

    async def notification_status(
        self, notification_id: str, who: Principal
    ) -> dict[str, Any]:
        rec = await asyncio.to_thread(self.store.get_notification, notification_id)
        if rec is not None and not inbox.visible_to(rec, who.user):
            # Answered like an unknown id (its existence is not disclosed), recorded as
            # refused.
            self.audit(who.user, audit.NOTIFICATION_STATUS, notification_id, "denied")
        if rec is None or not inbox.visible_to(rec, who.user):
            raise NotFound("no such notification")
        if inbox.expired(rec, self.clock.time()):
            inbox.mark_expired(rec)  # shown as such; stored so on the user's next connect
        return inbox.status(rec)
