"""Versioned schema migrations of both backends, applied when a store opens.

`MIGRATIONS` is the ordered history of the schema. Each entry carries the statements for
SQLite and for PostgreSQL; the versions applied are rows of the `schema_version` table.
Opening a store applies, in one transaction, every migration whose version is not there yet.

To change the schema, append one `Migration` with the next version number and both
dialects' statements. Never edit or reorder an entry once it has shipped: databases in the
field have recorded it as applied. Version 1 keeps `IF NOT EXISTS` everywhere so that a
database made before versioning (same tables, no `schema_version`) upgrades cleanly.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_SQLITE_V1 = (
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        epoch TEXT NOT NULL,
        created_at REAL NOT NULL,
        ended_at REAL,
        config TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        session_id TEXT NOT NULL,
        "offset" INTEGER NOT NULL,
        epoch TEXT NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        ts REAL NOT NULL,
        body TEXT NOT NULL,
        encrypted INTEGER NOT NULL,
        PRIMARY KEY (session_id, "offset")
    ) WITHOUT ROWID""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id ON messages (session_id, sender, id)",
    """CREATE TABLE IF NOT EXISTS notifications (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        producer TEXT NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        state TEXT NOT NULL,
        sent_at REAL,
        delivered_at REAL,
        read_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS notifications_user ON notifications (user, created_at, id)",
    """CREATE UNIQUE INDEX IF NOT EXISTS notifications_idem
        ON notifications (producer, idempotency_key) WHERE idempotency_key IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS fhe_keys (
        key_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        meta TEXT NOT NULL,
        blobs BLOB NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS fhe_aggregates (
        stream TEXT NOT NULL,
        key_id TEXT NOT NULL,
        count INTEGER NOT NULL,
        total BLOB NOT NULL,
        PRIMARY KEY (stream, key_id)
    )""",
)

# Text keys sort by code point ("C"), as SQLite's BINARY collation does, whatever the
# database's locale: pages of notifications break ties on `id` the same way on both.
_POSTGRES_V1 = (
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT COLLATE "C" PRIMARY KEY,
        epoch TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION,
        config TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        session_id TEXT COLLATE "C" NOT NULL,
        "offset" BIGINT NOT NULL,
        epoch TEXT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        sender TEXT COLLATE "C" NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        body TEXT NOT NULL,
        encrypted BOOLEAN NOT NULL,
        PRIMARY KEY (session_id, "offset")
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id ON messages (session_id, sender, id)",
    """CREATE TABLE IF NOT EXISTS notifications (
        id TEXT COLLATE "C" PRIMARY KEY,
        "user" TEXT COLLATE "C" NOT NULL,
        producer TEXT COLLATE "C" NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        state TEXT NOT NULL,
        sent_at DOUBLE PRECISION,
        delivered_at DOUBLE PRECISION,
        read_at DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT COLLATE "C"
    )""",
    'CREATE INDEX IF NOT EXISTS notifications_user ON notifications ("user", created_at, id)',
    """CREATE UNIQUE INDEX IF NOT EXISTS notifications_idem
        ON notifications (producer, idempotency_key) WHERE idempotency_key IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS fhe_keys (
        key_id TEXT COLLATE "C" PRIMARY KEY,
        owner TEXT NOT NULL,
        meta TEXT NOT NULL,
        blobs BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS fhe_aggregates (
        stream TEXT COLLATE "C" NOT NULL,
        key_id TEXT COLLATE "C" NOT NULL,
        count BIGINT NOT NULL,
        total BYTEA NOT NULL,
        PRIMARY KEY (stream, key_id)
    )""",
)

# The audit trail (issue 9): who did what to which target, when, with what outcome; never a
# body. `seq` orders events of the same `ts` (newest first = highest seq first). IF NOT
# EXISTS: development databases of the audit branch made the same table before versioning.
_SQLITE_V2 = (
    """CREATE TABLE IF NOT EXISTS audit_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts)",
    "CREATE INDEX IF NOT EXISTS audit_events_actor ON audit_events (actor, ts)",
    "CREATE INDEX IF NOT EXISTS audit_events_target ON audit_events (target, ts)",
)

_POSTGRES_V2 = (
    """CREATE TABLE IF NOT EXISTS audit_events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        actor TEXT COLLATE "C" NOT NULL,
        action TEXT NOT NULL,
        target TEXT COLLATE "C" NOT NULL,
        outcome TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts)",
    "CREATE INDEX IF NOT EXISTS audit_events_actor ON audit_events (actor, ts)",
    "CREATE INDEX IF NOT EXISTS audit_events_target ON audit_events (target, ts)",
)

# Idempotent FHE submits (issue 8): the (user, submit id)s each stream's stored sum counts,
# written in the sum's own transaction; dropped with their key. IF NOT EXISTS as in 2.
_SQLITE_V3 = (
    """CREATE TABLE IF NOT EXISTS fhe_contributions (
        stream TEXT NOT NULL,
        user TEXT NOT NULL,
        submit_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        PRIMARY KEY (stream, user, submit_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS fhe_contributions_key ON fhe_contributions (key_id)",
)

_POSTGRES_V3 = (
    """CREATE TABLE IF NOT EXISTS fhe_contributions (
        stream TEXT COLLATE "C" NOT NULL,
        "user" TEXT COLLATE "C" NOT NULL,
        submit_id TEXT COLLATE "C" NOT NULL,
        key_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (stream, "user", submit_id)
    )""",
    "CREATE INDEX IF NOT EXISTS fhe_contributions_key ON fhe_contributions (key_id)",
)

#: The schema's history, oldest first. Add a change as one new entry at the end.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "sessions, messages, notifications, FHE keys and aggregates",
              _SQLITE_V1, _POSTGRES_V1),
    Migration(2, "audit trail", _SQLITE_V2, _POSTGRES_V2),
    Migration(3, "FHE contributions counted per stream", _SQLITE_V3, _POSTGRES_V3),
)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL, applied_at {real} NOT NULL)"
)

#: pg_advisory_xact_lock key: stores opening at once migrate one after the other.
_PG_LOCK = 0x636F6E66  # "conf"


def latest_version() -> int:
    return MIGRATIONS[-1].version


def _pending(applied: set[int]) -> list[Migration]:
    return [m for m in MIGRATIONS if m.version not in applied]


def migrate_sqlite(db: sqlite3.Connection) -> list[int]:
    """Apply what is missing, in one transaction; the versions applied now.

    `db` must be in autocommit mode (isolation_level=None): the transaction is explicit.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_VERSION_TABLE.format(real="REAL"))
        applied = {int(r[0]) for r in db.execute("SELECT version FROM schema_version")}
        done = []
        for m in _pending(applied):
            for statement in m.sqlite:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (m.version, m.description, time.time()),
            )
            done.append(m.version)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return done


def migrate_postgres(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply what is missing, in one transaction under an advisory lock; the versions
    applied now. `conn` must be in autocommit mode."""
    done = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
        conn.execute(_VERSION_TABLE.format(real="DOUBLE PRECISION"))
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        applied = {int(_first(r)) for r in rows}
        for m in _pending(applied):
            for statement in m.postgres:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at)"
                " VALUES (%s, %s, %s)",
                (m.version, m.description, time.time()),
            )
            done.append(m.version)
    return done


def _first(row: Any) -> Any:
    """The first column of a tuple or dict row."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
