"""SQLite-only hardening of the store: owner-only file modes, and writes on a full disk
that fail cleanly and resume by themselves once space returns (PostgreSQL: test_postgres.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from confide.store.base import NotificationRecord, SessionRecord, StoredMessage
from confide.store.sqlite import SqliteStore
from tests.unit.diskfull import file_size_limit, fill, free

BIG = "y" * 4000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "confide.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(db_path))
    s.create_session(SessionRecord("s1", "ep", 1.0))
    yield s
    s.close()


def message(offset: int, body: str = BIG) -> StoredMessage:
    return StoredMessage("s1", offset, "ep", f"m{offset}", "alice", float(offset),
                         {"text": body}, False)


def offsets(store: SqliteStore) -> list[int]:
    return [m.offset for m in store.messages_after("s1", 0, 10**9, 10**6)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------- files


def test_data_dir_is_0700_and_database_files_0600(db_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask: the store must not rely on it
    try:
        s = SqliteStore(str(db_path))
        s.create_session(SessionRecord("s1", "ep", 1.0))
        s.append_messages([message(1)], 100)  # the -wal and -shm files exist now
        try:
            assert mode(db_path.parent) == 0o700
            for name in ("confide.db", "confide.db-wal", "confide.db-shm"):
                assert (db_path.parent / name).exists(), name
                assert mode(db_path.parent / name) == 0o600, name
        finally:
            s.close()
    finally:
        os.umask(old)


def test_existing_loose_modes_are_tightened(db_path: Path) -> None:
    db_path.parent.mkdir(mode=0o755)
    os.chmod(db_path.parent, 0o755)
    sqlite3.connect(db_path).close()
    os.chmod(db_path, 0o644)
    s = SqliteStore(str(db_path))
    try:
        assert mode(db_path.parent) == 0o700
        assert mode(db_path) == 0o600
    finally:
        s.close()


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    s = SqliteStore(str(shared / "confide.db"))
    try:
        assert mode(shared) == 0o1777
        assert mode(shared / "confide.db") == 0o600
    finally:
        s.close()


# ------------------------------------------------------------------- full disk


def test_full_disk_fails_the_write_with_its_own_error_and_writes_resume(
    store: SqliteStore,
) -> None:
    store.append_messages([message(1)], 10**6)
    fill(store)
    for _attempt in range(3):  # every write fails while the disk is full, none hangs
        with pytest.raises(sqlite3.OperationalError, match="full"):
            store.append_messages([message(2 + i) for i in range(50)], 10**6)
    assert offsets(store) == [1]  # reads go on
    free(store)
    store.append_messages([message(2)], 10**6)
    store.append_messages([message(3)], 10**6)
    assert offsets(store) == [1, 2, 3]


def test_full_disk_during_commit_itself_then_recovery(store: SqliteStore, db_path: Path) -> None:
    store.append_messages([message(1)], 10**6)
    wal = Path(f"{db_path}-wal")
    limit = max(db_path.stat().st_size, wal.stat().st_size)
    with file_size_limit(limit):
        # 1 MB in one transaction: the pages stay in SQLite's cache until COMMIT, which
        # must grow the WAL past the limit.
        with pytest.raises(sqlite3.OperationalError):
            store.append_messages([message(2, "z" * 1_000_000)], 10**6)
        with pytest.raises(sqlite3.OperationalError):
            store.append_messages([message(2, "z" * 1_000_000)], 10**6)
    store.append_messages([message(2)], 10**6)
    assert offsets(store) == [1, 2]


class _CommitFailsOnce:
    """The store's connection, but its next COMMIT fails with the transaction left open
    (what SQLite does when it cannot tell whether to roll back, e.g. SQLITE_BUSY)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)


def test_a_commit_that_fails_leaving_the_transaction_open_is_rolled_back(
    store: SqliteStore,
) -> None:
    store.append_messages([message(1)], 10**6)
    flaky = _CommitFailsOnce(store._conn())
    store._db = flaky  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.append_messages([message(2)], 10**6)
    assert flaky.failed
    # The next transactions start cleanly: nothing half-done is committed with them.
    store.append_messages([message(3)], 10**6)
    rec = NotificationRecord("n1", "bob", "svc", "k", "t", "b", {}, 1.0)
    assert store.insert_notification(rec)[1]
    assert offsets(store) == [1, 3]
