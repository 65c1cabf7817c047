"""SQLite store in WAL mode: one connection per process, guarded by a lock."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from confide.audit import AuditRecord
from confide.store.base import FheKeyRecord, NotificationRecord, SessionRecord, StoredMessage
from confide.store.migrations import migrate_sqlite
from confide.store.reads import MessageReads
from confide.store.sqlite_files import (
    BUSY_TIMEOUT_S,
    FILE_MODE,
    secure_directory,
    secure_files,
    switch_to_wal,
)
from confide.strictjson import loads_stored

log = logging.getLogger("confide.store")

# The audit trail: one table (migration 2), appended in batches, pruned by age.
AUDIT_INSERT = (
    "INSERT INTO audit_events (ts, actor, action, target, outcome) VALUES (?, ?, ?, ?, ?)"
)
AUDIT_PRUNE = "DELETE FROM audit_events WHERE ts < ?"

#: (user, submit id) pairs looked up per statement (two parameters each).
_SEEN_CHUNK = 400

_NOTIFICATION_COLUMNS = (
    "id, user, producer, kind, title, body, data, created_at, expires_at, state, "
    "sent_at, delivered_at, read_at, attempts, idempotency_key"
)




def _notification(row: sqlite3.Row) -> NotificationRecord:
    values: dict[str, Any] = dict(row)
    values["data"] = loads_stored(values["data"])
    return NotificationRecord(**values)


class SqliteStore(MessageReads):
    def __init__(self, path: str) -> None:
        self._path = path
        secure_directory(Path(path).parent)
        # Created 0600 before SQLite opens it: SQLite gives -wal and -shm the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = self._connect()
        migrate_sqlite(self._db)
        secure_files(path)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        switch_to_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _conn(self) -> sqlite3.Connection:
        """The connection (under the lock); reopened if a failure left none."""
        if self._db is None:
            self._db = self._connect()
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Whatever fails in it (a statement, or the COMMIT itself,
        e.g. on a full disk) is rolled back and the error raised as it was; the connection
        is left ready for the next transaction, so writes resume once space returns."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                self._recover(db)
                raise

    def _recover(self, db: sqlite3.Connection) -> None:
        """After a failed transaction: roll back what SQLite did not roll back itself; a
        connection that cannot be brought out of its transaction is dropped (the next
        call opens a new one)."""
        if not db.in_transaction:
            return  # SQLite rolled back already (it does on SQLITE_FULL and I/O errors)
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback failed (%s): reopening the database", type(exc).__name__)
        if db.in_transaction:
            self._db = None
            with suppress(sqlite3.Error):
                db.close()

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn().execute(sql, args).fetchall()

    # ------------------------------------------------------------------ chat

    def load_session(self, session_id: str) -> SessionRecord | None:
        rows = self._read(
            'SELECT s.*, (SELECT MAX("offset") FROM messages m WHERE m.session_id = s.session_id)'
            ' AS last, (SELECT MIN("offset") FROM messages m WHERE m.session_id = s.session_id)'
            " AS first FROM sessions s WHERE s.session_id = ?",
            (session_id,),
        )
        if not rows:
            return None
        r = rows[0]
        last = r["last"] or 0
        return SessionRecord(
            session_id=session_id,
            epoch=r["epoch"],
            created_at=r["created_at"],
            last_offset=last,
            first_offset=r["first"] if r["first"] is not None else last + 1,
            ended_at=r["ended_at"],
            config=json.loads(r["config"]),
        )

    def create_session(self, record: SessionRecord) -> SessionRecord:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO sessions (session_id, epoch, created_at) VALUES (?, ?, ?)",
                (record.session_id, record.epoch, record.created_at),
            )
        loaded = self.load_session(record.session_id)
        assert loaded is not None
        return loaded

    def end_session(self, session_id: str, ts: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE sessions SET ended_at = ? WHERE session_id = ?", (ts, session_id))

    def set_session_config(self, session_id: str, config: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET config = ? WHERE session_id = ?",
                (json.dumps(config), session_id),
            )

    def append_messages(self, messages: list[StoredMessage], retention: int) -> None:
        newest: dict[str, int] = {}
        with self._tx() as db:
            db.executemany(
                'INSERT INTO messages (session_id, "offset", epoch, id, sender, ts, body,'
                " encrypted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (m.session_id, m.offset, m.epoch, m.id, m.sender, m.ts,
                     json.dumps(m.body, separators=(",", ":")), int(m.encrypted))
                    for m in messages
                ],
            )
            for m in messages:
                newest[m.session_id] = max(newest.get(m.session_id, 0), m.offset)
            for session_id, last in newest.items():
                if last > retention:
                    db.execute(
                        'DELETE FROM messages WHERE session_id = ? AND "offset" <= ?',
                        (session_id, last - retention),
                    )

    # --------------------------------------------------------- notifications

    def insert_notification(self, rec: NotificationRecord) -> tuple[NotificationRecord, bool]:
        with self._tx() as db:
            if rec.idempotency_key is not None:
                row = db.execute(
                    f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"
                    " WHERE producer = ? AND idempotency_key = ?",
                    (rec.producer, rec.idempotency_key),
                ).fetchone()
                if row is not None:
                    return _notification(row), False
            db.execute(
                f"INSERT INTO notifications ({_NOTIFICATION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.id, rec.user, rec.producer, rec.kind, rec.title, rec.body,
                 json.dumps(rec.data), rec.created_at, rec.expires_at, rec.state, rec.sent_at,
                 rec.delivered_at, rec.read_at, rec.attempts, rec.idempotency_key),
            )
        return rec, True

    def get_notification(self, notification_id: str) -> NotificationRecord | None:
        rows = self._read(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?", (notification_id,)
        )
        return _notification(rows[0]) if rows else None

    def update_notifications(self, updates: list[NotificationRecord]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE notifications SET state = ?, sent_at = ?, delivered_at = ?, read_at = ?,"
                " attempts = ? WHERE id = ?",
                [(u.state, u.sent_at, u.delivered_at, u.read_at, u.attempts, u.id)
                 for u in updates],
            )

    def undelivered_notifications(self, user: str, now: float) -> list[NotificationRecord]:
        """Queued or sent ones, oldest first; those past their TTL become `expired` here."""
        with self._tx() as db:
            db.execute(
                "UPDATE notifications SET state = 'expired' WHERE user = ?"
                " AND state IN ('queued', 'sent') AND expires_at IS NOT NULL AND expires_at <= ?",
                (user, now),
            )
            rows = db.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE user = ?"
                " AND state IN ('queued', 'sent') ORDER BY created_at, id",
                (user,),
            ).fetchall()
        return [_notification(r) for r in rows]

    def list_notifications(
        self, user: str, unread_only: bool, limit: int, before: str | None
    ) -> list[NotificationRecord]:
        sql = f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE user = ?"
        args: list[Any] = [user]
        if unread_only:
            sql += " AND state IN ('queued', 'sent', 'delivered')"
        if before is not None:
            sql += (
                " AND (created_at, id) < (SELECT created_at, id FROM notifications"
                " WHERE id = ? AND user = ?)"
            )
            args += [before, user]
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [_notification(r) for r in self._read(sql, tuple(args))]

    def notification_counts(self, user: str, now: float) -> tuple[int, int]:
        rows = self._read(
            "SELECT SUM(state IN ('queued', 'sent')) AS pending,"
            " SUM(state IN ('queued', 'sent', 'delivered')) AS unread"
            " FROM notifications WHERE user = ? AND (expires_at IS NULL OR expires_at > ?"
            " OR state NOT IN ('queued', 'sent'))",
            (user, now),
        )
        return int(rows[0]["pending"] or 0), int(rows[0]["unread"] or 0)

    # -------------------------------------------------------------------- FHE

    def put_fhe_key(self, rec: FheKeyRecord) -> None:
        blobs = json.dumps({k: v.hex() for k, v in rec.blobs.items()}).encode()
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO fhe_keys (key_id, owner, meta, blobs, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (rec.key_id, rec.owner, json.dumps(rec.meta), blobs, rec.created_at),
            )

    def get_fhe_key(self, key_id: str) -> FheKeyRecord | None:
        rows = self._read("SELECT * FROM fhe_keys WHERE key_id = ?", (key_id,))
        if not rows:
            return None
        r = rows[0]
        blobs = {k: bytes.fromhex(v) for k, v in json.loads(r["blobs"]).items()}
        return FheKeyRecord(r["key_id"], r["owner"], json.loads(r["meta"]), blobs, r["created_at"])

    def delete_fhe_key(self, key_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM fhe_keys WHERE key_id = ?", (key_id,))
            db.execute("DELETE FROM fhe_aggregates WHERE key_id = ?", (key_id,))
            db.execute("DELETE FROM fhe_contributions WHERE key_id = ?", (key_id,))

    def save_aggregate(self, stream: str, key_id: str, count: int, total: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO fhe_aggregates (stream, key_id, count, total)"
                " VALUES (?, ?, ?, ?)",
                (stream, key_id, count, total),
            )

    def load_aggregate(self, stream: str, key_id: str) -> tuple[int, bytes] | None:
        rows = self._read(
            "SELECT count, total FROM fhe_aggregates WHERE stream = ? AND key_id = ?",
            (stream, key_id),
        )
        return (int(rows[0]["count"]), bytes(rows[0]["total"])) if rows else None

    # ------------------------------------------------------------ audit trail

    def append_audit(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        with self._tx() as db:
            db.executemany(AUDIT_INSERT, [
                (r.ts, r.actor, r.action, r.target, r.outcome) for r in records])

    def query_audit(
        self, user: str | None, target: str | None, since: float | None, limit: int
    ) -> list[AuditRecord]:
        """Events newest first, by actor, target and time (`ts >= since`)."""
        sql = "SELECT ts, actor, action, target, outcome FROM audit_events WHERE 1 = 1"
        args: list[Any] = []
        if user is not None:
            sql += " AND actor = ?"
            args.append(user)
        if target is not None:
            sql += " AND target = ?"
            args.append(target)
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        sql += " ORDER BY ts DESC, seq DESC LIMIT ?"
        args.append(limit)
        return [AuditRecord(r["ts"], r["actor"], r["action"], r["target"], r["outcome"])
                for r in self._read(sql, tuple(args))]

    def prune_audit(self, before: float) -> int:
        """Delete events older than `before`; how many went."""
        with self._tx() as db:
            return int(db.execute(AUDIT_PRUNE, (before,)).rowcount)

    # ------------------------------------------- FHE folds (idempotent, key-checked)

    def fold_aggregate(
        self, stream: str, key_id: str, count: int, total: bytes,
        contributions: Sequence[tuple[str, str]],
    ) -> bool:
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM fhe_keys WHERE key_id = ?", (key_id,)).fetchall():
                return False
            db.execute(
                "INSERT OR REPLACE INTO fhe_aggregates (stream, key_id, count, total)"
                " VALUES (?, ?, ?, ?)",
                (stream, key_id, count, total),
            )
            db.executemany(
                "INSERT OR IGNORE INTO fhe_contributions (stream, user, submit_id, key_id)"
                " VALUES (?, ?, ?, ?)",
                [(stream, user, sid, key_id) for user, sid in contributions],
            )
        return True

    def fhe_contributions_seen(
        self, stream: str, contributions: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        seen: set[tuple[str, str]] = set()
        for i in range(0, len(contributions), _SEEN_CHUNK):
            chunk = contributions[i : i + _SEEN_CHUNK]
            values = ", ".join("(?, ?)" for _ in chunk)
            rows = self._read(
                f"WITH q(u, s) AS (VALUES {values}) SELECT f.user, f.submit_id"
                " FROM q JOIN fhe_contributions f ON f.stream = ? AND f.user = q.u"
                " AND f.submit_id = q.s",
                (*(v for c in chunk for v in c), stream),
            )
            seen.update((r[0], r[1]) for r in rows)
        return seen

    def fhe_key_exists(self, key_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM fhe_keys WHERE key_id = ?", (key_id,)))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
