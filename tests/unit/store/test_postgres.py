"""PostgreSQL-only behaviour: reconnecting after a server restart, retries that never
write twice when a commit's outcome is unknown, and failed transactions (a statement, the
caller, the COMMIT itself) that leave the pooled connection ready for the next one."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from confide.audit import AuditRecord
from confide.store.base import FheKeyRecord, SessionRecord
from confide.store.postgres import PostgresStore
from tests.pgserver import PgServer, fresh_schema
from tests.unit.store.test_store import message, notification


def offsets(store: PostgresStore, session_id: str = "s1") -> list[int]:
    return [m.offset for m in store.messages_after(session_id, 0, 1000, 1000)]


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def restartable(pg_server: PgServer) -> Iterator[str]:
    """A schema on this session's own server, which the test may stop and start."""
    with fresh_schema(pg_server.url) as url:
        yield url


@pytest.fixture
def pg(pg_schema_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_schema_url)
    s.create_session(SessionRecord("s1", "ep", 1.0))
    yield s
    s.close()


# ------------------------------------------------------------------ reconnecting


def test_reconnects_after_a_restart(pg_server: PgServer, restartable: str) -> None:
    store = PostgresStore(restartable)
    try:
        store.create_session(SessionRecord("s1", "ep", 1.0))
        store.append_messages([message(1)], 100)
        pg_server.stop()
        pg_server.start()
        store.append_messages([message(2)], 100)  # every pooled connection died
        assert offsets(store) == [1, 2]
        assert store.load_session("s1").last_offset == 2  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_write_during_an_outage_waits_for_the_server(
    pg_server: PgServer, restartable: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(restartable)
    try:
        store.create_session(SessionRecord("s1", "ep", 1.0))
        store.append_messages([message(1)], 100)
        pg_server.stop()
        with caplog.at_level(logging.WARNING, "confide.store.pgpool"), \
                ThreadPoolExecutor(1) as pool:
            write = pool.submit(store.append_messages, [message(2), message(3)], 100)
            wait_for(lambda: any("retrying" in r.getMessage() for r in caplog.records))
            assert not write.done()
            pg_server.start()
            write.result(timeout=60)
        assert offsets(store) == [1, 2, 3]
        assert all("m2" not in r.getMessage() for r in caplog.records)  # no bodies, no ids
    finally:
        if not _up(pg_server):
            pg_server.start()
        store.close()


def _up(server: PgServer) -> bool:
    try:
        with psycopg.connect(server.url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def test_gives_up_after_retry_s(pg_server: PgServer, restartable: str) -> None:
    store = PostgresStore(restartable, retry_s=1.0)
    try:
        pg_server.stop()
        with pytest.raises(psycopg.OperationalError):
            store.load_session("s1")
    finally:
        pg_server.start()
        store.close()


def test_terminated_connections_are_replaced(pg: PostgresStore, pg_schema_url: str) -> None:
    pg.append_messages([message(1)], 100)
    with psycopg.connect(pg_schema_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = '' AND pid <> pg_backend_pid()"
            " AND datname = current_database() AND backend_type = 'client backend'"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    pg.append_messages([message(2)], 100)
    assert offsets(pg) == [1, 2]


# ------------------------------------------------------------------ retries


class _Flaky:
    """The pool, but the connection is 'lost' right after (or before) some commits."""

    def __init__(self, real: Any, after_commit: int = 0, before_commit: int = 0) -> None:
        self.real = real
        self.after_commit = after_commit
        self.before_commit = before_commit

    @contextmanager
    def connection(self) -> Iterator[Any]:
        if self.before_commit:
            self.before_commit -= 1
            raise psycopg.OperationalError("connection lost before the commit")
        with self.real.connection() as conn:
            yield conn
        if self.after_commit:
            self.after_commit -= 1
            raise psycopg.OperationalError("connection lost after the commit")

    def close(self) -> None:
        self.real.close()


def _flaky(store: PostgresStore, **kw: int) -> None:
    store._pool._pool = _Flaky(store._pool._pool, **kw)  # type: ignore[assignment]


def test_retry_after_an_ambiguous_commit_writes_a_batch_once(pg: PostgresStore) -> None:
    pg.append_messages([message(1)], 100)
    _flaky(pg, after_commit=1)
    pg.append_messages([message(2), message(3, sender="bob")], 100)
    assert offsets(pg) == [1, 2, 3]
    # the constraint is intact: a real duplicate still fails, and writes nothing
    with pytest.raises(psycopg.IntegrityError):
        pg.append_messages([message(4), message(5, msg_id="m2")], 100)
    assert offsets(pg) == [1, 2, 3]


def test_retry_after_an_ambiguous_commit_with_retention(pg: PostgresStore) -> None:
    pg.append_messages([message(i) for i in range(1, 4)], 2)
    _flaky(pg, after_commit=1)
    pg.append_messages([message(4), message(5)], 2)
    assert offsets(pg) == [4, 5]


def test_retry_before_the_commit_writes_once(pg: PostgresStore) -> None:
    _flaky(pg, before_commit=2)
    pg.append_messages([message(1), message(2)], 100)
    assert offsets(pg) == [1, 2]


def test_notification_retried_after_an_ambiguous_commit_is_created_once(
    pg: PostgresStore,
) -> None:
    _flaky(pg, after_commit=1)
    got, created = pg.insert_notification(notification("n1", 1.0, key="k"))
    assert created and got.id == "n1"
    _flaky(pg, after_commit=1)
    got, created = pg.insert_notification(notification("n2", 2.0))
    assert created and got.id == "n2"
    assert [n.id for n in pg.list_notifications("alice", False, 50, None)] == ["n2", "n1"]
    again, created = pg.insert_notification(notification("n3", 3.0, key="k"))
    assert not created and again.id == "n1"


def test_session_and_upserts_are_idempotent_under_retry(pg: PostgresStore) -> None:
    _flaky(pg, after_commit=3)
    rec = pg.create_session(SessionRecord("s2", "ep2", 2.0))
    assert (rec.epoch, rec.last_offset) == ("ep2", 0)
    pg.save_aggregate("fhe:x", "k1", 2, b"t")
    assert pg.load_aggregate("fhe:x", "k1") == (2, b"t")


def test_nul_in_text_is_refused_and_the_batch_writes_nothing(pg: PostgresStore) -> None:
    """PostgreSQL's text cannot hold U+0000 (SQLite's can): such a message fails its whole
    batch, like any failed batch, and the store stays usable (docs/operations.md)."""
    with pytest.raises(psycopg.DataError):
        pg.append_messages([message(1), message(2, msg_id="a\u0000b")], 100)
    assert offsets(pg) == []
    pg.append_messages([message(1)], 100)
    assert offsets(pg) == [1]


def test_audit_batch_retried_after_an_ambiguous_commit_is_written_once(
    pg: PostgresStore,
) -> None:
    batch = [AuditRecord(1.0, "alice", "session.join", "s1", "ok"),
             AuditRecord(2.0, "alice", "session.leave", "s1", "ok")]
    _flaky(pg, after_commit=1)
    pg.append_audit(batch)
    _flaky(pg, before_commit=1)
    pg.append_audit([AuditRecord(3.0, "bob", "key.fetch", "k1", "denied")])
    assert [r.ts for r in pg.query_audit(None, None, None, 10)] == [3.0, 2.0, 1.0]


# ------------------------------------------------------------------ failed transactions


@pytest.fixture
def one_conn(pg_schema_url: str) -> Iterator[PostgresStore]:
    """A store whose pool holds a single connection: every operation reuses it."""
    s = PostgresStore(pg_schema_url, max_size=1)
    s.create_session(SessionRecord("s1", "ep", 1.0))
    yield s
    s.close()


def _backend_pid(store: PostgresStore) -> int:
    return int(store._pool.run(
        lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"],
        write=False))


def test_a_failed_statement_leaves_the_pooled_connection_usable(
    one_conn: PostgresStore,
) -> None:
    pid = _backend_pid(one_conn)
    one_conn.append_messages([message(1, msg_id="dup")], 100)
    with pytest.raises(psycopg.IntegrityError):
        one_conn.append_messages([message(2), message(3, msg_id="dup")], 100)
    one_conn.append_messages([message(2)], 100)  # not "current transaction is aborted"
    assert offsets(one_conn) == [1, 2]
    assert _backend_pid(one_conn) == pid  # the same connection, rolled back, not replaced


def test_an_error_raised_by_the_caller_rolls_the_transaction_back(
    one_conn: PostgresStore,
) -> None:
    def work(conn: Any, retry: bool) -> None:
        conn.execute('INSERT INTO messages (session_id, "offset", epoch, id, sender, ts,'
                     " body, encrypted) VALUES ('s1', 7, 'ep', 'x', 'a', 1, '{}', false)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        one_conn._pool.run(work)
    assert offsets(one_conn) == []
    one_conn.append_messages([message(1)], 100)
    assert offsets(one_conn) == [1]


def test_a_commit_that_fails_leaves_nothing_and_the_connection_usable(
    one_conn: PostgresStore,
) -> None:
    """PostgreSQL's failing COMMIT (here a deferred constraint; a full disk is another) rolls
    the whole transaction back; the pool's connection is ready for the next one."""
    one_conn._pool.run(lambda conn, retry: conn.execute(
        "CREATE TABLE deferred_check (k INTEGER,"
        " UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"))
    pid = _backend_pid(one_conn)

    def work(conn: Any, retry: bool) -> None:
        conn.execute("INSERT INTO deferred_check VALUES (1), (1)")  # fine until COMMIT
        conn.execute(
            "UPDATE sessions SET ended_at = 9 WHERE session_id = 's1'")

    with pytest.raises(psycopg.IntegrityError):
        one_conn._pool.run(work)
    assert one_conn.load_session("s1").ended_at is None  # type: ignore[union-attr]
    one_conn.append_messages([message(1)], 100)
    assert offsets(one_conn) == [1]
    assert _backend_pid(one_conn) == pid


# ------------------------------------------------------------------ FHE folds


def test_a_fold_racing_a_key_deletion_cannot_resurrect_the_aggregate(
    pg: PostgresStore, pg_schema_url: str
) -> None:
    """The fold waits for a deletion in progress (the key's row is share-locked), then finds
    no key and stores nothing."""
    pg.put_fhe_key(FheKeyRecord("k1", "dr", {}, {"context": b"c"}, 1.0))
    with psycopg.connect(pg_schema_url) as deleter, ThreadPoolExecutor(1) as pool:
        deleter.execute("DELETE FROM fhe_keys WHERE key_id = 'k1'")  # not committed yet
        deleter.execute("DELETE FROM fhe_aggregates WHERE key_id = 'k1'")
        fold = pool.submit(pg.fold_aggregate, "fhe:a", "k1", 1, b"late", [("u1", "s1")])
        wait_for(lambda: _waiting_on_a_lock(pg_schema_url))
        assert not fold.done()
        deleter.commit()
        assert fold.result(timeout=30) is False
    assert pg.load_aggregate("fhe:a", "k1") is None
    assert ("u1", "s1") not in pg.fhe_contributions_seen("fhe:a", [("u1", "s1")])


def _waiting_on_a_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).fetchone()
    return row is not None and row[0] > 0


def test_a_fold_retried_after_an_ambiguous_commit_counts_once(pg: PostgresStore) -> None:
    pg.put_fhe_key(FheKeyRecord("k1", "dr", {}, {"context": b"c"}, 1.0))
    _flaky(pg, after_commit=1)
    assert pg.fold_aggregate("fhe:a", "k1", 2, b"sum2", [("u1", "s1"), ("u2", "s1")])
    assert pg.load_aggregate("fhe:a", "k1") == (2, b"sum2")
    assert ("u2", "s1") in pg.fhe_contributions_seen("fhe:a", [("u2", "s1")])
