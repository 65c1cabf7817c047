"""Notification inboxes: the delivery state machine and the REST request model (sans-I/O).

States move forward only: queued → sent → delivered → read, or → expired past `ttl_s`
while still undelivered. Each step keeps its time; every send counts an attempt.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from confide.errors import Forbidden, NotFound
from confide.protocol import Notification
from confide.store.base import NotificationRecord

ORDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
PRODUCER_ROLES = frozenset({"service", "admin", "therapist"})


class NotificationRequest(BaseModel):
    """The body of `POST /api/notifications`."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=64)
    title: str = Field(max_length=256)
    body: str = Field(max_length=16_384)
    data: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float | None = Field(default=None, gt=0, le=365 * 24 * 3600)


def new_record(
    req: NotificationRequest, producer: str, idempotency_key: str | None, now: float
) -> NotificationRecord:
    return NotificationRecord(
        id=uuid.uuid4().hex,
        user=req.user,
        producer=producer,
        kind=req.kind,
        title=req.title,
        body=req.body,
        data=req.data,
        created_at=now,
        expires_at=now + req.ttl_s if req.ttl_s is not None else None,
        idempotency_key=idempotency_key,
    )


def frame(rec: NotificationRecord, with_state: bool = False) -> dict[str, Any]:
    return Notification(
        id=rec.id, kind=rec.kind, title=rec.title, body=rec.body, data=rec.data,
        created_at=rec.created_at, state=rec.state if with_state else None,
    ).dump()


def status(rec: NotificationRecord) -> dict[str, Any]:
    """What `GET /api/notifications/{id}` shows."""
    return {
        "id": rec.id,
        "user": rec.user,
        "state": rec.state,
        "created_at": rec.created_at,
        "sent_at": rec.sent_at,
        "delivered_at": rec.delivered_at,
        "read_at": rec.read_at,
        "attempts": rec.attempts,
    }


def expired(rec: NotificationRecord, now: float) -> bool:
    return (
        rec.expires_at is not None
        and now >= rec.expires_at
        and rec.state in ("queued", "sent")
    )


def mark_sent(rec: NotificationRecord, now: float) -> NotificationRecord:
    """One more delivery attempt; the first one moves queued → sent."""
    rec.attempts += 1
    if rec.state == "queued":
        rec.state = "sent"
        rec.sent_at = now
    return rec


def mark_expired(rec: NotificationRecord) -> NotificationRecord:
    rec.state = "expired"
    return rec


def acknowledge(rec: NotificationRecord, user: str, state: str, now: float) -> bool:
    """Apply a client's ack; True when the record changed. Never moves backwards."""
    if rec.user != user:
        raise NotFound("no such notification")
    if rec.state == "expired" or ORDER[state] <= ORDER.get(rec.state, 99):
        return False
    if rec.sent_at is None:
        rec.sent_at = now
    if rec.delivered_at is None:
        rec.delivered_at = now
    if state == "read":
        rec.read_at = now
    rec.state = state
    return True


def visible_to(rec: NotificationRecord, user: str) -> bool:
    return user in (rec.user, rec.producer)


def check_producer(role: str) -> None:
    if role not in PRODUCER_ROLES:
        raise Forbidden("this role may not send notifications")


@dataclass
class Inbox:
    """One user's inbox on its host (sans-I/O): which connections are open, and what
    they are sent. The notifications themselves live in the store; the host reads and
    writes them around these decisions, one change of a user's inbox at a time."""

    user: str
    conns: set[str] = field(default_factory=set)

    @property
    def online(self) -> bool:
        return bool(self.conns)

    def attach(self, conn_id: str) -> None:
        self.conns.add(conn_id)

    def detach(self, conn_id: str) -> None:
        self.conns.discard(conn_id)

    def drop_connections(self, prefix: str) -> None:
        """A gateway replica died: forget its connections."""
        self.conns = {c for c in self.conns if not c.startswith(prefix)}

    def send_live(self, rec: NotificationRecord, now: float) -> dict[str, Any] | None:
        """A notification was just stored: its frame (and it becomes `sent`) when a
        connection is open and it is still `queued`; None otherwise."""
        if not self.conns or rec.state != "queued":
            return None
        mark_sent(rec, now)
        return frame(rec)

    def backlog(self, records: list[NotificationRecord], now: float) -> list[dict[str, Any]]:
        """A connection opened: every undelivered notification is sent again, oldest
        first (at-least-once: each counts an attempt)."""
        for rec in records:
            mark_sent(rec, now)
        return [frame(rec) for rec in records]
