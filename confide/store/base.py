"""The store interface and the records that cross it.

Every method is synchronous and safe to call from several threads; callers on an
event loop run them in a thread. A backend is chosen by URL with `open_store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confide.audit import AuditRecord
from confide.protocol import MessageEvent


@dataclass(frozen=True)
class StoredMessage:
    session_id: str
    offset: int
    epoch: str
    id: str
    sender: str
    ts: float
    body: dict[str, Any]
    encrypted: bool

    def frame(self) -> dict[str, Any]:
        """The `message` frame every member gets."""
        return MessageEvent(
            session_id=self.session_id, offset=self.offset, epoch=self.epoch, id=self.id,
            sender=self.sender, ts=self.ts, body=self.body, encrypted=self.encrypted,
        ).dump()


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    epoch: str
    created_at: float
    last_offset: int = 0
    first_offset: int = 1
    ended_at: float | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class NotificationRecord:
    id: str
    user: str
    producer: str
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: float
    expires_at: float | None = None
    state: str = "queued"
    sent_at: float | None = None
    delivered_at: float | None = None
    read_at: float | None = None
    attempts: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True)
class FheKeyRecord:
    key_id: str
    owner: str
    meta: dict[str, Any]
    blobs: dict[str, bytes]
    created_at: float


class Store(Protocol):
    # chat
    def load_session(self, session_id: str) -> SessionRecord | None: ...
    def create_session(self, record: SessionRecord) -> SessionRecord: ...
    def end_session(self, session_id: str, ts: float) -> None: ...
    def set_session_config(self, session_id: str, config: dict[str, Any]) -> None: ...
    def append_messages(self, messages: list[StoredMessage], retention: int) -> None: ...
    def find_message(self, session_id: str, sender: str, msg_id: str) -> StoredMessage | None: ...
    def recent_ids(self, session_id: str, limit: int) -> list[tuple[str, str, int]]:
        """(sender, id, offset) of the newest `limit` messages, oldest first."""
        ...
    def messages_after(
        self, session_id: str, after: int, upto: int, limit: int
    ) -> list[StoredMessage]: ...
    def messages_before(
        self, session_id: str, before: int | None, limit: int
    ) -> list[StoredMessage]: ...

    # notifications
    def insert_notification(self, rec: NotificationRecord) -> tuple[NotificationRecord, bool]: ...
    def get_notification(self, notification_id: str) -> NotificationRecord | None: ...
    def update_notifications(self, updates: list[NotificationRecord]) -> None: ...
    def undelivered_notifications(self, user: str, now: float) -> list[NotificationRecord]: ...
    def list_notifications(
        self, user: str, unread_only: bool, limit: int, before: str | None
    ) -> list[NotificationRecord]: ...
    def notification_counts(self, user: str, now: float) -> tuple[int, int]: ...

    # FHE keys and aggregates
    def put_fhe_key(self, rec: FheKeyRecord) -> None: ...
    def get_fhe_key(self, key_id: str) -> FheKeyRecord | None: ...
    def delete_fhe_key(self, key_id: str) -> None: ...
    def save_aggregate(self, stream: str, key_id: str, count: int, total: bytes) -> None: ...
    def load_aggregate(self, stream: str, key_id: str) -> tuple[int, bytes] | None: ...

    # audit trail (issue 9)
    def append_audit(self, records: list[AuditRecord]) -> None: ...
    def query_audit(
        self, user: str | None, target: str | None, since: float | None, limit: int
    ) -> list[AuditRecord]:
        """Events newest first, filtered by actor, target and `ts >= since`."""
        ...
    def prune_audit(self, before: float) -> int:
        """Delete events with `ts < before`; how many were deleted."""
        ...

    def fold_aggregate(
        self, stream: str, key_id: str, count: int, total: bytes,
        contributions: Sequence[tuple[str, str]],
    ) -> bool:
        """In one transaction, only while the key is registered: store the aggregate and
        record each (user, submit id) as counted. False (nothing written) once the key
        was deleted."""
        ...
    def fhe_contributions_seen(
        self, stream: str, contributions: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Which of these (user, submit id) were already counted in `stream` (any key)."""
        ...
    def fhe_key_exists(self, key_id: str) -> bool:
        """Whether the key is registered (cheap: no blobs read)."""
        ...

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """A store for `sqlite:///path` or `postgresql://...`."""
    if url.startswith("sqlite:///"):
        from confide.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from confide.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError("CONFIDE_STORE must start with sqlite:/// or postgresql://")
