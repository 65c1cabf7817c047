"""Versioned schema migrations: applied at start on both backends, once, atomically; and a
SQLite file from before versioning upgrades in place."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from confide.store import migrations as mig
from confide.store import open_store
from confide.store.base import SessionRecord
from confide.store.migrations import MIGRATIONS, Migration, latest_version
from tests.unit.store.test_store import message, notification

#: The schema as the code wrote it before migrations were versioned (no schema_version).
PRE_VERSIONING_SCHEMA = """
CREATE TABLE sessions (session_id TEXT PRIMARY KEY, epoch TEXT NOT NULL,
    created_at REAL NOT NULL, ended_at REAL, config TEXT NOT NULL DEFAULT '{}');
CREATE TABLE messages (session_id TEXT NOT NULL, "offset" INTEGER NOT NULL,
    epoch TEXT NOT NULL, id TEXT NOT NULL, sender TEXT NOT NULL, ts REAL NOT NULL,
    body TEXT NOT NULL, encrypted INTEGER NOT NULL, PRIMARY KEY (session_id, "offset"))
    WITHOUT ROWID;
CREATE UNIQUE INDEX messages_client_id ON messages (session_id, sender, id);
CREATE TABLE notifications (id TEXT PRIMARY KEY, user TEXT NOT NULL, producer TEXT NOT NULL,
    kind TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, data TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL, state TEXT NOT NULL, sent_at REAL,
    delivered_at REAL, read_at REAL, attempts INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT);
CREATE INDEX notifications_user ON notifications (user, created_at, id);
CREATE UNIQUE INDEX notifications_idem ON notifications (producer, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE fhe_keys (key_id TEXT PRIMARY KEY, owner TEXT NOT NULL, meta TEXT NOT NULL,
    blobs BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE fhe_aggregates (stream TEXT NOT NULL, key_id TEXT NOT NULL,
    count INTEGER NOT NULL, total BLOB NOT NULL, PRIMARY KEY (stream, key_id));
INSERT INTO sessions VALUES ('s1', 'ep', 1.0, NULL, '{"model": "m"}');
INSERT INTO messages VALUES ('s1', 1, 'ep', 'm1', 'alice', 1.0, '{"n":1}', 0);
INSERT INTO messages VALUES ('s1', 2, 'ep', 'm2', 'bob', 2.0, '{"n":2}', 1);
INSERT INTO notifications VALUES ('n1', 'alice', 'svc', 'reminder', 't', 'b', '{}', 1.0,
    NULL, 'queued', NULL, NULL, NULL, 0, 'idem');
INSERT INTO fhe_aggregates VALUES ('fhe:x', 'k1', 3, X'00FF');
"""

EXTRA = Migration(
    len(MIGRATIONS) + 1,
    "test: an audit table",
    ("CREATE TABLE audit_test (id INTEGER PRIMARY KEY, what TEXT NOT NULL)",),
    ("CREATE TABLE audit_test (id BIGSERIAL PRIMARY KEY, what TEXT NOT NULL)",),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'confide.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def versions(url: str) -> list[int]:
    return [r[0] for r in query(url, "SELECT version FROM schema_version ORDER BY version")]


@pytest.fixture
def with_extra(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(mig, "MIGRATIONS", (*MIGRATIONS, EXTRA))
    yield


def test_history_is_ordered_and_complete() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(m.sqlite and m.postgres and m.description for m in MIGRATIONS)
    assert latest_version() == MIGRATIONS[-1].version


def test_a_new_database_gets_every_version_once(store_url: str) -> None:
    open_store(store_url).close()
    assert versions(store_url) == [m.version for m in MIGRATIONS]
    open_store(store_url).close()  # reopening applies nothing again
    assert versions(store_url) == [m.version for m in MIGRATIONS]


def test_a_new_migration_is_applied_at_the_next_start(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = open_store(store_url)  # first start: the shipped history
    s.create_session(SessionRecord("s1", "ep", 1.0))
    s.append_messages([message(1)], 100)
    s.close()
    monkeypatch.setattr(mig, "MIGRATIONS", (*MIGRATIONS, EXTRA))  # a release adds one
    s = open_store(store_url)
    try:
        assert versions(store_url)[-1] == EXTRA.version
        assert query(store_url, "SELECT count(*) FROM audit_test") == [(0,)]
        assert [m.offset for m in s.messages_after("s1", 0, 10, 10)] == [1]
    finally:
        s.close()


def test_a_failing_migration_applies_nothing(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Migration(
        len(MIGRATIONS) + 1, "test: broken",
        ("CREATE TABLE half_done (x INTEGER)", "NOT SQL AT ALL"),
        ("CREATE TABLE half_done (x INTEGER)", "NOT SQL AT ALL"),
    )
    open_store(store_url).close()
    monkeypatch.setattr(mig, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        open_store(store_url)
    assert versions(store_url) == [m.version for m in MIGRATIONS]
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        query(store_url, "SELECT * FROM half_done")


def test_stores_opening_at_once_migrate_once(store_url: str, with_extra: None) -> None:
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: open_store(store_url), range(4)))
    for s in stores:
        s.close()
    assert versions(store_url) == [*[m.version for m in MIGRATIONS], EXTRA.version]


def test_a_sqlite_file_from_before_versioning_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(PRE_VERSIONING_SCHEMA)
    db.close()
    url = f"sqlite:///{path}"
    s = open_store(url)
    try:
        assert versions(url) == [m.version for m in MIGRATIONS]
        rec = s.load_session("s1")
        assert rec is not None and (rec.last_offset, rec.config) == (2, {"model": "m"})
        assert [(m.id, m.encrypted) for m in s.messages_after("s1", 0, 10, 10)] == [
            ("m1", False), ("m2", True)]
        assert s.insert_notification(notification("n2", 2.0, key="idem"))[0].id == "n1"
        assert s.load_aggregate("fhe:x", "k1") == (3, b"\x00\xff")
        s.append_messages([message(3)], 100)
        assert s.find_message("s1", "alice", "m3") is not None
    finally:
        s.close()
