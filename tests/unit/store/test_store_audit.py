"""The store's audit trail, over both backends: batched appends, queries newest first,
pruning by age."""

from __future__ import annotations

from confide.audit import AuditRecord
from confide.store import Store, open_store


def rec(ts: float, actor: str = "alice", action: str = "session.join",
        target: str = "s1", outcome: str = "ok") -> AuditRecord:
    return AuditRecord(ts, actor, action, target, outcome)


def test_append_and_query_newest_first(store: Store) -> None:
    records = [rec(1.0), rec(2.0, action="session.leave"), rec(3.0, "bob", target="s2")]
    store.append_audit(records)
    assert store.query_audit(None, None, None, 10) == records[::-1]


def test_same_timestamp_keeps_insertion_order_reversed(store: Store) -> None:
    records = [rec(5.0, action=f"a{i}") for i in range(4)]
    store.append_audit(records[:2])
    store.append_audit(records[2:])
    assert [r.action for r in store.query_audit(None, None, None, 10)] == [
        "a3", "a2", "a1", "a0"]


def test_filters_by_actor_target_and_since(store: Store) -> None:
    store.append_audit([rec(1.0), rec(2.0, "bob"), rec(3.0, target="s2"),
                        rec(4.0, "bob", target="s2")])
    assert [r.ts for r in store.query_audit("alice", None, None, 10)] == [3.0, 1.0]
    assert [r.ts for r in store.query_audit(None, "s2", None, 10)] == [4.0, 3.0]
    assert [r.ts for r in store.query_audit("bob", "s2", None, 10)] == [4.0]
    assert [r.ts for r in store.query_audit(None, None, 2.0, 10)] == [4.0, 3.0, 2.0]
    assert store.query_audit("carol", None, None, 10) == []


def test_limit_keeps_the_newest(store: Store) -> None:
    store.append_audit([rec(float(i)) for i in range(10)])
    assert [r.ts for r in store.query_audit(None, None, None, 3)] == [9.0, 8.0, 7.0]


def test_append_of_nothing_is_a_no_op(store: Store) -> None:
    store.append_audit([])
    assert store.query_audit(None, None, None, 10) == []


def test_prune_deletes_only_older_events(store: Store) -> None:
    store.append_audit([rec(float(i)) for i in range(10)])
    assert store.prune_audit(4.0) == 4
    assert [r.ts for r in store.query_audit(None, None, None, 100)] == [
        9.0, 8.0, 7.0, 6.0, 5.0, 4.0]
    assert store.prune_audit(4.0) == 0


def test_audit_survives_a_reopen(store_url: str) -> None:
    a = open_store(store_url)
    a.append_audit([rec(1.0)])
    a.close()
    b = open_store(store_url)
    try:
        assert b.query_audit(None, None, None, 10) == [rec(1.0)]
    finally:
        b.close()
