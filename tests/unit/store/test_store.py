"""The store suite, run over both backends (fixtures in conftest.py): sessions, messages,
notifications, FHE keys and aggregates; the audit trail and the FHE contributions are in
test_store_audit.py and test_store_fhe.py. SQLite- and PostgreSQL-only behaviour lives in
test_sqlite.py, test_sqlite_hardening.py and test_postgres.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from confide.store import Store, open_store
from confide.store.base import FheKeyRecord, NotificationRecord, SessionRecord, StoredMessage
from confide.store.postgres import PostgresStore
from confide.store.sqlite import SqliteStore

#: What a write that breaks a unique constraint raises, per backend.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


def message(offset: int, session_id: str = "s1", sender: str = "alice",
            msg_id: str | None = None, encrypted: bool = False) -> StoredMessage:
    return StoredMessage(session_id, offset, "ep", msg_id or f"m{offset}", sender,
                         float(offset), {"n": offset, "nested": {"é": [1, None]}}, encrypted)


def new_session(store: Store, session_id: str = "s1") -> SessionRecord:
    return store.create_session(SessionRecord(session_id, "ep", 1.0))


def notification(nid: str, created_at: float, user: str = "alice", producer: str = "svc",
                 key: str | None = None, state: str = "queued") -> NotificationRecord:
    return NotificationRecord(
        id=nid, user=user, producer=producer, kind="reminder", title=f"t-{nid}",
        body="b", data={"k": [1, 2]}, created_at=created_at, state=state,
        idempotency_key=key,
    )


# ------------------------------------------------------------------ open


def test_open_store_by_url(tmp_path: Path, pg_schema_url: str) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(s, SqliteStore)
    s.close()
    p = open_store(pg_schema_url)
    assert isinstance(p, PostgresStore)
    p.close()
    with pytest.raises(ValueError):
        open_store("mysql://x")


# ------------------------------------------------------------------ sessions


def test_session_round_trip(store: Store) -> None:
    assert store.load_session("s1") is None
    created = new_session(store)
    assert created == SessionRecord("s1", "ep", 1.0, last_offset=0, first_offset=1)
    assert store.load_session("s1") == created


def test_create_session_keeps_the_first(store: Store) -> None:
    new_session(store)
    again = store.create_session(SessionRecord("s1", "other-epoch", 9.0))
    assert (again.epoch, again.created_at) == ("ep", 1.0)


def test_end_and_config(store: Store) -> None:
    new_session(store)
    store.set_session_config("s1", {"model": "m", "key_id": "k"})
    store.end_session("s1", 42.0)
    rec = store.load_session("s1")
    assert rec is not None
    assert rec.ended_at == 42.0
    assert rec.config == {"model": "m", "key_id": "k"}


def test_messages_round_trip_and_offsets(store: Store) -> None:
    new_session(store)
    msgs = [message(1), message(2, sender="bob", encrypted=True), message(3)]
    store.append_messages(msgs, retention=100)
    assert store.messages_after("s1", 0, 3, 100) == msgs
    rec = store.load_session("s1")
    assert rec is not None and (rec.first_offset, rec.last_offset) == (1, 3)


def test_messages_after_bounds_and_order(store: Store) -> None:
    new_session(store)
    store.append_messages([message(i) for i in range(1, 11)], retention=100)
    assert [m.offset for m in store.messages_after("s1", 3, 7, 100)] == [4, 5, 6, 7]
    assert [m.offset for m in store.messages_after("s1", 3, 10, 2)] == [4, 5]
    assert store.messages_after("s1", 10, 10, 100) == []
    assert store.messages_after("other", 0, 10, 100) == []


def test_messages_before_pages_newest_oldest_first(store: Store) -> None:
    new_session(store)
    store.append_messages([message(i) for i in range(1, 11)], retention=100)
    assert [m.offset for m in store.messages_before("s1", None, 3)] == [8, 9, 10]
    assert [m.offset for m in store.messages_before("s1", 8, 3)] == [5, 6, 7]
    assert [m.offset for m in store.messages_before("s1", 3, 50)] == [1, 2]
    assert store.messages_before("s1", 1, 50) == []
    assert [m.offset for m in store.messages_before("s1", None, 100)] == list(range(1, 11))


def test_retention_trims_oldest(store: Store) -> None:
    new_session(store)
    new_session(store, "s2")
    store.append_messages([message(i) for i in range(1, 5)], retention=3)
    store.append_messages([message(i, session_id="s2") for i in range(1, 3)], retention=3)
    assert [m.offset for m in store.messages_after("s1", 0, 100, 100)] == [2, 3, 4]
    store.append_messages([message(5), message(6)], retention=3)
    assert [m.offset for m in store.messages_after("s1", 0, 100, 100)] == [4, 5, 6]
    rec = store.load_session("s1")
    assert rec is not None and (rec.first_offset, rec.last_offset) == (4, 6)
    assert len(store.messages_after("s2", 0, 100, 100)) == 2  # other sessions untouched


def test_find_message(store: Store) -> None:
    new_session(store)
    store.append_messages([message(1, msg_id="x"), message(2, sender="bob", msg_id="x")], 100)
    found = store.find_message("s1", "bob", "x")
    assert found is not None and found.offset == 2
    assert store.find_message("s1", "carol", "x") is None
    assert store.find_message("s2", "alice", "x") is None


def test_find_message_gone_after_trim(store: Store) -> None:
    new_session(store)
    store.append_messages([message(i) for i in range(1, 4)], retention=1)
    assert store.find_message("s1", "alice", "m1") is None
    assert store.find_message("s1", "alice", "m3") is not None


def test_failed_batch_writes_nothing(store: Store) -> None:
    new_session(store)
    store.append_messages([message(1, msg_id="dup")], 100)
    with pytest.raises(INTEGRITY_ERRORS):
        store.append_messages([message(2), message(3, msg_id="dup"), message(4)], 100)
    assert [m.offset for m in store.messages_after("s1", 0, 100, 100)] == [1]
    store.append_messages([message(2)], 100)  # the store is still usable
    assert store.load_session("s1").last_offset == 2  # type: ignore[union-attr]


# ------------------------------------------------------------------ notifications


def test_notification_round_trip(store: Store) -> None:
    rec = notification("n1", 5.0)
    rec.expires_at = 99.0
    got, created = store.insert_notification(rec)
    assert created and got == rec
    assert store.get_notification("n1") == rec
    assert store.get_notification("nope") is None


def test_notification_idempotency_key(store: Store) -> None:
    _, created = store.insert_notification(notification("n1", 1.0, key="k"))
    assert created
    again, created = store.insert_notification(notification("n2", 2.0, key="k"))
    assert not created
    assert again.id == "n1" and again.created_at == 1.0
    assert store.get_notification("n2") is None
    _, created = store.insert_notification(notification("n3", 3.0, producer="other", key="k"))
    assert created  # keys are per producer
    _, c4 = store.insert_notification(notification("n4", 4.0))
    _, c5 = store.insert_notification(notification("n5", 5.0))
    assert c4 and c5  # no key: never deduplicated


def test_update_states(store: Store) -> None:
    rec, _ = store.insert_notification(notification("n1", 1.0))
    rec.state, rec.sent_at, rec.attempts = "sent", 2.0, 1
    store.update_notifications([rec])
    rec.state, rec.delivered_at, rec.read_at = "read", 3.0, 4.0
    store.update_notifications([rec])
    got = store.get_notification("n1")
    assert got is not None
    assert (got.state, got.sent_at, got.delivered_at, got.read_at, got.attempts) == (
        "read", 2.0, 3.0, 4.0, 1)


def _states(store: Store) -> None:
    for i, state in enumerate(["queued", "sent", "delivered", "read", "expired", "queued"]):
        store.insert_notification(notification(f"n{i}", float(10 - i), state=state))
    store.insert_notification(notification("bob1", 1.0, user="bob"))


def test_undelivered_oldest_first(store: Store) -> None:
    _states(store)
    assert [n.id for n in store.undelivered_notifications("alice", 0.0)] == ["n5", "n1", "n0"]
    assert [n.id for n in store.undelivered_notifications("bob", 0.0)] == ["bob1"]
    assert store.undelivered_notifications("carol", 0.0) == []


def test_counts(store: Store) -> None:
    _states(store)
    assert store.notification_counts("alice", 0.0) == (3, 4)  # pending, unread
    assert store.notification_counts("carol", 0.0) == (0, 0)


def test_list_newest_first_with_state(store: Store) -> None:
    _states(store)
    unread = store.list_notifications("alice", True, 50, None)
    assert [(n.id, n.state) for n in unread] == [
        ("n0", "queued"), ("n1", "sent"), ("n2", "delivered"), ("n5", "queued")]
    everything = store.list_notifications("alice", False, 50, None)
    assert [n.id for n in everything] == ["n0", "n1", "n2", "n3", "n4", "n5"]


def test_list_before_pages(store: Store) -> None:
    for i in range(7):
        store.insert_notification(notification(f"n{i}", float(i)))
    store.insert_notification(notification("tie-a", 3.0))  # same created_at as n3
    pages, before = [], None
    while True:
        page = store.list_notifications("alice", False, 3, before)
        if not page:
            break
        pages.append([n.id for n in page])
        before = page[-1].id
    flat = [i for p in pages for i in p]
    assert flat == ["n6", "n5", "n4", "tie-a", "n3", "n2", "n1", "n0"]
    assert all(len(p) <= 3 for p in pages)


def test_list_before_other_users_id_gives_nothing(store: Store) -> None:
    store.insert_notification(notification("a1", 1.0))
    store.insert_notification(notification("b1", 5.0, user="bob"))
    assert store.list_notifications("alice", False, 50, "b1") == []


def test_expired_notifications_not_redelivered(store: Store) -> None:
    rec = notification("old", 1.0)
    rec.expires_at = 10.0
    store.insert_notification(rec)
    store.insert_notification(notification("fresh", 2.0))
    assert [n.id for n in store.undelivered_notifications("alice", 20.0)] == ["fresh"]
    assert store.notification_counts("alice", 20.0) == (1, 1)


# ------------------------------------------------------------------ FHE


def test_fhe_key_round_trip_and_delete(store: Store) -> None:
    key = FheKeyRecord("k1", "alice", {"ring_dim": 16384, "slots": 8192, "depth": 2},
                       {"context": b"\x00\x01\xff", "public_key": bytes(range(256))}, 7.0)
    store.put_fhe_key(key)
    assert store.get_fhe_key("k1") == key
    assert store.get_fhe_key("k2") is None
    store.save_aggregate("fhe:mood", "k1", 3, b"\x00sum\xff")
    store.save_aggregate("fhe:mood", "k1", 4, b"\x00sum2")  # replaces
    store.save_aggregate("fhe:sleep", "k1", 1, b"x")
    store.save_aggregate("fhe:mood", "k9", 1, b"y")
    assert store.load_aggregate("fhe:mood", "k1") == (4, b"\x00sum2")
    assert store.load_aggregate("fhe:none", "k1") is None
    store.delete_fhe_key("k1")
    assert store.get_fhe_key("k1") is None
    assert store.load_aggregate("fhe:mood", "k1") is None  # aggregates go with their key
    assert store.load_aggregate("fhe:sleep", "k1") is None
    assert store.load_aggregate("fhe:mood", "k9") == (1, b"y")


# ------------------------------------------------------------------ durability


def test_survives_reopen(store_url: str) -> None:
    s = open_store(store_url)
    s.create_session(SessionRecord("s1", "ep", 1.0))
    s.append_messages([message(1), message(2)], 100)
    s.end_session("s1", 3.0)
    s.insert_notification(notification("n1", 1.0, key="idem"))
    s.put_fhe_key(FheKeyRecord("k1", "alice", {}, {"context": b"c"}, 1.0))
    s.save_aggregate("fhe:x", "k1", 2, b"t")
    s.close()

    r = open_store(store_url)
    try:
        rec = r.load_session("s1")
        assert rec is not None and (rec.last_offset, rec.ended_at) == (2, 3.0)
        assert [m.offset for m in r.messages_after("s1", 0, 10, 10)] == [1, 2]
        assert r.insert_notification(notification("n2", 2.0, key="idem"))[0].id == "n1"
        assert r.get_fhe_key("k1") is not None
        assert r.load_aggregate("fhe:x", "k1") == (2, b"t")
    finally:
        r.close()


def test_two_stores_on_one_database_see_each_other(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    try:
        a.create_session(SessionRecord("s1", "ep", 1.0))
        a.append_messages([message(1)], 100)
        rec = b.load_session("s1")
        assert rec is not None and rec.last_offset == 1
        # the unique constraints hold across stores, as across host actors
        with pytest.raises(INTEGRITY_ERRORS):
            b.append_messages([message(2, msg_id="m1")], 100)
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ same semantics


def test_ties_sort_by_code_point(store: Store) -> None:
    """Ties on created_at break on id by code point on both backends ("B" < "a" < "é")."""
    for nid in ["a", "é", "B"]:
        store.insert_notification(notification(nid, 1.0))
    assert [n.id for n in store.list_notifications("alice", False, 50, None)] == ["é", "a", "B"]
    assert [n.id for n in store.undelivered_notifications("alice", 0.0)] == ["B", "a", "é"]


def test_odd_bodies_round_trip(store: Store) -> None:
    new_session(store)
    odd = StoredMessage("s1", 1, "ep", "id-é", "bob", 1.5,
                        {"nul": "a\u0000b", "emoji": "🙂", "big": 2**60, "f": 0.1}, True)
    store.append_messages([odd], 100)
    assert store.messages_after("s1", 0, 1, 10) == [odd]
    assert store.find_message("s1", "bob", "id-é") == odd
