"""Durable state behind one interface: SQLite by default, PostgreSQL for clusters."""

from confide.store.base import (
    FheKeyRecord,
    NotificationRecord,
    SessionRecord,
    Store,
    StoredMessage,
    open_store,
)

__all__ = [
    "FheKeyRecord",
    "NotificationRecord",
    "SessionRecord",
    "Store",
    "StoredMessage",
    "open_store",
]
