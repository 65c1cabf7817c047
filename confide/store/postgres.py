"""PostgreSQL store: the same interface and semantics as the SQLite store, for clusters.

Every host actor and FHE worker holds its own pool (confide/store/pgpool.py). A write is one
transaction; `append_messages` writes a whole group-commit batch in one. Writes are retried
across a server restart, and a retry after a commit of unknown outcome first looks whether
that commit happened: a message, a notification or a session is never written twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from confide.audit import AuditRecord
from confide.store.base import FheKeyRecord, NotificationRecord, SessionRecord, StoredMessage
from confide.store.pgpool import Conn, PgPool
from confide.store.reads import MessageReads
from confide.strictjson import loads_stored

_NOTIFICATION_COLUMNS = (
    'id, "user", producer, kind, title, body, data, created_at, expires_at, state, '
    "sent_at, delivered_at, read_at, attempts, idempotency_key"
)
_SELECT_NOTIFICATION = f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"




def _notification(row: dict[str, Any]) -> NotificationRecord:
    values = dict(row)
    values["data"] = loads_stored(values["data"])
    return NotificationRecord(**values)


class PostgresStore(MessageReads):
    PLACEHOLDER = "%s"

    def __init__(self, url: str, *, retry_s: float = 30.0, max_size: int = 4) -> None:
        self._pool = PgPool(url, retry_s=retry_s, max_size=max_size)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        def work(conn: Conn) -> list[dict[str, Any]]:
            return conn.execute(sql, args).fetchall()

        return self._pool.run(work, write=False)

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """One idempotent statement (an update, an upsert, a delete)."""
        def work(conn: Conn, retry: bool) -> None:
            conn.execute(sql, args)

        self._pool.run(work)

    # ------------------------------------------------------------------ chat

    def load_session(self, session_id: str) -> SessionRecord | None:
        rows = self._read(
            "SELECT s.*, (SELECT MAX(\"offset\") FROM messages m"
            " WHERE m.session_id = s.session_id) AS last,"
            " (SELECT MIN(\"offset\") FROM messages m WHERE m.session_id = s.session_id)"
            " AS first FROM sessions s WHERE s.session_id = %s",
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
        self._write(
            "INSERT INTO sessions (session_id, epoch, created_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (session_id) DO NOTHING",
            (record.session_id, record.epoch, record.created_at),
        )
        loaded = self.load_session(record.session_id)
        assert loaded is not None
        return loaded

    def end_session(self, session_id: str, ts: float) -> None:
        self._write("UPDATE sessions SET ended_at = %s WHERE session_id = %s", (ts, session_id))

    def set_session_config(self, session_id: str, config: dict[str, Any]) -> None:
        self._write(
            "UPDATE sessions SET config = %s WHERE session_id = %s",
            (json.dumps(config), session_id),
        )

    def append_messages(self, messages: list[StoredMessage], retention: int) -> None:
        """The whole batch in one transaction, or nothing of it."""
        if not messages:
            return
        newest: dict[str, StoredMessage] = {}
        for m in messages:
            if m.session_id not in newest or m.offset > newest[m.session_id].offset:
                newest[m.session_id] = m

        def work(conn: Conn, retry: bool) -> None:
            if retry and _committed(conn, list(newest.values())):
                return
            with conn.cursor() as cur:
                cur.executemany(
                    'INSERT INTO messages (session_id, "offset", epoch, id, sender, ts, body,'
                    " encrypted) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (m.session_id, m.offset, m.epoch, m.id, m.sender, m.ts,
                         json.dumps(m.body, separators=(",", ":")), m.encrypted)
                        for m in messages
                    ],
                )
                for session_id, last in newest.items():
                    if last.offset > retention:
                        cur.execute(
                            'DELETE FROM messages WHERE session_id = %s AND "offset" <= %s',
                            (session_id, last.offset - retention),
                        )

        self._pool.run(work)

    # --------------------------------------------------------- notifications

    def insert_notification(self, rec: NotificationRecord) -> tuple[NotificationRecord, bool]:
        def work(conn: Conn, retry: bool) -> tuple[NotificationRecord, bool]:
            if retry:  # the first attempt may have inserted it
                row = conn.execute(f"{_SELECT_NOTIFICATION} WHERE id = %s", (rec.id,)).fetchone()
                if row is not None:
                    return _notification(row), True
            inserted = conn.execute(
                f"INSERT INTO notifications ({_NOTIFICATION_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (producer, idempotency_key) WHERE idempotency_key IS NOT NULL"
                " DO NOTHING RETURNING id",
                (rec.id, rec.user, rec.producer, rec.kind, rec.title, rec.body,
                 json.dumps(rec.data), rec.created_at, rec.expires_at, rec.state, rec.sent_at,
                 rec.delivered_at, rec.read_at, rec.attempts, rec.idempotency_key),
            ).fetchone()
            if inserted is not None:
                return rec, True
            row = conn.execute(
                f"{_SELECT_NOTIFICATION} WHERE producer = %s AND idempotency_key = %s",
                (rec.producer, rec.idempotency_key),
            ).fetchone()
            assert row is not None
            return _notification(row), False

        return self._pool.run(work)

    def get_notification(self, notification_id: str) -> NotificationRecord | None:
        rows = self._read(f"{_SELECT_NOTIFICATION} WHERE id = %s", (notification_id,))
        return _notification(rows[0]) if rows else None

    def update_notifications(self, updates: list[NotificationRecord]) -> None:
        if not updates:
            return

        def work(conn: Conn, retry: bool) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE notifications SET state = %s, sent_at = %s, delivered_at = %s,"
                    " read_at = %s, attempts = %s WHERE id = %s",
                    [(u.state, u.sent_at, u.delivered_at, u.read_at, u.attempts, u.id)
                     for u in updates],
                )

        self._pool.run(work)

    def undelivered_notifications(self, user: str, now: float) -> list[NotificationRecord]:
        """Queued or sent ones, oldest first; those past their TTL become `expired` here."""
        def work(conn: Conn, retry: bool) -> list[dict[str, Any]]:
            conn.execute(
                "UPDATE notifications SET state = 'expired' WHERE \"user\" = %s"
                " AND state IN ('queued', 'sent') AND expires_at IS NOT NULL"
                " AND expires_at <= %s",
                (user, now),
            )
            return conn.execute(
                f"{_SELECT_NOTIFICATION} WHERE \"user\" = %s"
                " AND state IN ('queued', 'sent') ORDER BY created_at, id",
                (user,),
            ).fetchall()

        return [_notification(r) for r in self._pool.run(work)]

    def list_notifications(
        self, user: str, unread_only: bool, limit: int, before: str | None
    ) -> list[NotificationRecord]:
        sql = f'{_SELECT_NOTIFICATION} WHERE "user" = %s'
        args: list[Any] = [user]
        if unread_only:
            sql += " AND state IN ('queued', 'sent', 'delivered')"
        if before is not None:
            sql += (
                " AND (created_at, id) < (SELECT created_at, id FROM notifications"
                ' WHERE id = %s AND "user" = %s)'
            )
            args += [before, user]
        sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
        args.append(limit)
        return [_notification(r) for r in self._read(sql, tuple(args))]

    def notification_counts(self, user: str, now: float) -> tuple[int, int]:
        rows = self._read(
            "SELECT COUNT(*) FILTER (WHERE state IN ('queued', 'sent')) AS pending,"
            " COUNT(*) FILTER (WHERE state IN ('queued', 'sent', 'delivered')) AS unread"
            ' FROM notifications WHERE "user" = %s AND (expires_at IS NULL OR expires_at > %s'
            " OR state NOT IN ('queued', 'sent'))",
            (user, now),
        )
        return int(rows[0]["pending"]), int(rows[0]["unread"])

    # -------------------------------------------------------------------- FHE

    def put_fhe_key(self, rec: FheKeyRecord) -> None:
        blobs = json.dumps({k: v.hex() for k, v in rec.blobs.items()}).encode()
        self._write(
            "INSERT INTO fhe_keys (key_id, owner, meta, blobs, created_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key_id) DO UPDATE SET"
            " owner = EXCLUDED.owner, meta = EXCLUDED.meta, blobs = EXCLUDED.blobs,"
            " created_at = EXCLUDED.created_at",
            (rec.key_id, rec.owner, json.dumps(rec.meta), blobs, rec.created_at),
        )

    def get_fhe_key(self, key_id: str) -> FheKeyRecord | None:
        rows = self._read("SELECT * FROM fhe_keys WHERE key_id = %s", (key_id,))
        if not rows:
            return None
        r = rows[0]
        blobs = {k: bytes.fromhex(v) for k, v in json.loads(bytes(r["blobs"])).items()}
        return FheKeyRecord(r["key_id"], r["owner"], json.loads(r["meta"]), blobs, r["created_at"])

    def delete_fhe_key(self, key_id: str) -> None:
        def work(conn: Conn, retry: bool) -> None:
            conn.execute("DELETE FROM fhe_keys WHERE key_id = %s", (key_id,))
            conn.execute("DELETE FROM fhe_aggregates WHERE key_id = %s", (key_id,))
            conn.execute("DELETE FROM fhe_contributions WHERE key_id = %s", (key_id,))

        self._pool.run(work)

    def save_aggregate(self, stream: str, key_id: str, count: int, total: bytes) -> None:
        self._write(
            "INSERT INTO fhe_aggregates (stream, key_id, count, total) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (stream, key_id) DO UPDATE SET count = EXCLUDED.count,"
            " total = EXCLUDED.total",
            (stream, key_id, count, total),
        )

    def load_aggregate(self, stream: str, key_id: str) -> tuple[int, bytes] | None:
        rows = self._read(
            "SELECT count, total FROM fhe_aggregates WHERE stream = %s AND key_id = %s",
            (stream, key_id),
        )
        return (int(rows[0]["count"]), bytes(rows[0]["total"])) if rows else None

    # ------------------------------------------- FHE folds (idempotent, key-checked)

    def fold_aggregate(
        self, stream: str, key_id: str, count: int, total: bytes,
        contributions: Sequence[tuple[str, str]],
    ) -> bool:
        """The sum and the ids it counts in one transaction, only while the key exists: the
        key's row is share-locked, so a concurrent delete_fhe_key waits for this commit
        (then deletes what it wrote) or, first, makes this find no key. Idempotent, so a
        retry after a commit of unknown outcome writes the same again."""
        rows = [(stream, user, sid, key_id) for user, sid in contributions]

        def work(conn: Conn, retry: bool) -> bool:
            if conn.execute("SELECT 1 FROM fhe_keys WHERE key_id = %s FOR SHARE",
                            (key_id,)).fetchone() is None:
                return False
            conn.execute(
                "INSERT INTO fhe_aggregates (stream, key_id, count, total)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (stream, key_id) DO UPDATE SET"
                " count = EXCLUDED.count, total = EXCLUDED.total",
                (stream, key_id, count, total),
            )
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        'INSERT INTO fhe_contributions (stream, "user", submit_id, key_id)'
                        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        rows,
                    )
            return True

        return bool(self._pool.run(work))

    def fhe_contributions_seen(
        self, stream: str, contributions: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        if not contributions:
            return set()
        rows = self._read(
            'SELECT f."user", f.submit_id FROM unnest(%s::text[], %s::text[]) AS q(u, s)'
            ' JOIN fhe_contributions f ON f.stream = %s AND f."user" = q.u'
            " AND f.submit_id = q.s",
            ([c[0] for c in contributions], [c[1] for c in contributions], stream),
        )
        return {(r["user"], r["submit_id"]) for r in rows}

    def fhe_key_exists(self, key_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM fhe_keys WHERE key_id = %s", (key_id,)))

    # ------------------------------------------------------------ audit trail

    def append_audit(self, records: list[AuditRecord]) -> None:
        """The batch in one transaction. A retry after a commit of unknown outcome first
        looks for the batch's last record (a batch is all or nothing)."""
        if not records:
            return
        rows = [(r.ts, r.actor, r.action, r.target, r.outcome) for r in records]

        def work(conn: Conn, retry: bool) -> None:
            if retry and conn.execute(
                "SELECT 1 FROM audit_events WHERE ts = %s AND actor = %s AND action = %s"
                " AND target = %s AND outcome = %s LIMIT 1",
                rows[-1],
            ).fetchone() is not None:
                return
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO audit_events (ts, actor, action, target, outcome)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    rows,
                )

        self._pool.run(work)

    def query_audit(
        self, user: str | None, target: str | None, since: float | None, limit: int
    ) -> list[AuditRecord]:
        """Events newest first, by actor, target and time (`ts >= since`)."""
        sql = "SELECT ts, actor, action, target, outcome FROM audit_events WHERE TRUE"
        args: list[Any] = []
        if user is not None:
            sql += " AND actor = %s"
            args.append(user)
        if target is not None:
            sql += " AND target = %s"
            args.append(target)
        if since is not None:
            sql += " AND ts >= %s"
            args.append(since)
        sql += " ORDER BY ts DESC, seq DESC LIMIT %s"
        args.append(limit)
        return [AuditRecord(r["ts"], r["actor"], r["action"], r["target"], r["outcome"])
                for r in self._read(sql, tuple(args))]

    def prune_audit(self, before: float) -> int:
        """Delete events older than `before`; how many went (a retry counts only its own)."""
        def work(conn: Conn, retry: bool) -> int:
            return conn.execute("DELETE FROM audit_events WHERE ts < %s", (before,)).rowcount

        return int(self._pool.run(work))

    def close(self) -> None:
        self._pool.close()


def _committed(conn: Conn, newest: list[StoredMessage]) -> bool:
    """Whether a batch whose commit failed went in after all: its newest message of each
    session is there, with the same sender and id (a batch is all or nothing)."""
    for m in newest:
        row = conn.execute(
            'SELECT sender, id FROM messages WHERE session_id = %s AND "offset" = %s',
            (m.session_id, m.offset),
        ).fetchone()
        if row is None or (row["sender"], row["id"]) != (m.sender, m.id):
            return False
    return True
