"""Reads of the message log: the same SQL on both backends, only the placeholder differs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from confide.store.base import StoredMessage
from confide.strictjson import loads_stored


def message_from_row(row: Mapping[str, Any]) -> StoredMessage:
    return StoredMessage(
        session_id=row["session_id"],
        offset=row["offset"],
        epoch=row["epoch"],
        id=row["id"],
        sender=row["sender"],
        ts=row["ts"],
        body=loads_stored(row["body"]),  # old rows may hold Infinity: served as null
        encrypted=bool(row["encrypted"]),
    )


class MessageReads:
    """`find_message`, `recent_ids`, `messages_after`, `messages_before` for a store whose
    `_read(sql, args)` runs one query; its SQL is written with `?` placeholders."""

    #: The driver's placeholder: `?` (sqlite3) or `%s` (psycopg).
    PLACEHOLDER: ClassVar[str] = "?"

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> Sequence[Any]:
        raise NotImplementedError

    def _query(self, sql: str, args: tuple[Any, ...]) -> Sequence[Any]:
        return self._read(sql.replace("?", self.PLACEHOLDER), args)

    def find_message(self, session_id: str, sender: str, msg_id: str) -> StoredMessage | None:
        rows = self._query(
            "SELECT * FROM messages WHERE session_id = ? AND sender = ? AND id = ?",
            (session_id, sender, msg_id),
        )
        return message_from_row(rows[0]) if rows else None

    def recent_ids(self, session_id: str, limit: int) -> list[tuple[str, str, int]]:
        rows = self._query(
            'SELECT sender, id, "offset" FROM messages WHERE session_id = ?'
            ' ORDER BY "offset" DESC LIMIT ?',
            (session_id, limit),
        )
        return [(r["sender"], r["id"], r["offset"]) for r in reversed(rows)]

    def messages_after(
        self, session_id: str, after: int, upto: int, limit: int
    ) -> list[StoredMessage]:
        rows = self._query(
            'SELECT * FROM messages WHERE session_id = ? AND "offset" > ? AND "offset" <= ?'
            ' ORDER BY "offset" LIMIT ?',
            (session_id, after, upto, limit),
        )
        return [message_from_row(r) for r in rows]

    def messages_before(
        self, session_id: str, before: int | None, limit: int
    ) -> list[StoredMessage]:
        rows = self._query(
            'SELECT * FROM messages WHERE session_id = ? AND "offset" < ?'
            ' ORDER BY "offset" DESC LIMIT ?',
            (session_id, before if before is not None else 2**62, limit),
        )
        return [message_from_row(r) for r in reversed(rows)]
