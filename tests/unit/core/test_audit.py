"""The audit trail's records and buffer (sans-I/O)."""

from __future__ import annotations

from confide.audit import ANONYMOUS, MAX_FIELD, AuditBuffer, AuditRecord, record


def r(n: int) -> AuditRecord:
    return record(float(n), "alice", "session.join", f"s{n}")


def test_record_bounds_its_fields_and_names_the_anonymous() -> None:
    long = record(1.0, "a" * 1000, "x" * 1000, "t" * 1000, "denied")
    assert len(long.actor) == len(long.action) == len(long.target) == MAX_FIELD
    assert record(1.0, "", "connect", "/ws/chat/s1", "unauthenticated").actor == ANONYMOUS
    assert r(1).dump() == {"ts": 1.0, "actor": "alice", "action": "session.join",
                           "target": "s1", "outcome": "ok"}


def test_take_empties_the_buffer_in_order() -> None:
    buf = AuditBuffer()
    buf.add(r(1))
    buf.extend([r(2), r(3)])
    assert len(buf) == 3
    assert buf.take() == [r(1), r(2), r(3)]
    assert len(buf) == 0 and buf.take() == []


def test_a_failed_write_puts_its_batch_back_in_front() -> None:
    buf = AuditBuffer()
    buf.extend([r(1), r(2)])
    taken = buf.take()
    buf.add(r(3))
    buf.put_back(taken)
    assert buf.take() == [r(1), r(2), r(3)]


def test_capacity_drops_the_oldest_and_counts_them() -> None:
    buf = AuditBuffer(capacity=3)
    buf.extend([r(i) for i in range(5)])
    assert buf.take() == [r(2), r(3), r(4)] and buf.dropped == 2
    buf.extend([r(7), r(8)])
    buf.put_back([r(5), r(6)])
    assert buf.take() == [r(6), r(7), r(8)] and buf.dropped == 3


def test_full_batch() -> None:
    buf = AuditBuffer(batch=2)
    buf.add(r(1))
    assert not buf.full_batch()
    buf.add(r(2))
    assert buf.full_batch()
