"""Events and the host's bounded event log."""

from __future__ import annotations

import json

import pytest

from confide.events import Event, EventLog


def ev(n: int, **filters: object) -> Event:
    return Event("chat:s1", {"type": "message", "n": n}, **filters)  # type: ignore[arg-type]


# ------------------------------------------------------------------ filters


def test_unfiltered_event_reaches_everyone() -> None:
    e = ev(1)
    assert e.for_connection("alice", "client")
    assert e.for_connection("tom", "therapist")


def test_exclude_user() -> None:
    e = ev(1, exclude_user="alice")
    assert not e.for_connection("alice", "client")
    assert not e.for_connection("alice", "therapist")
    assert e.for_connection("bob", "client")


def test_only_user() -> None:
    e = ev(1, only_user="alice")
    assert e.for_connection("alice", "client")
    assert not e.for_connection("bob", "admin")


def test_only_roles() -> None:
    e = ev(1, only_roles=frozenset({"therapist", "admin"}))
    assert e.for_connection("tom", "therapist")
    assert e.for_connection("root", "admin")
    assert not e.for_connection("alice", "client")


def test_filters_combine() -> None:
    e = ev(1, only_roles=frozenset({"therapist"}), exclude_user="tom")
    assert not e.for_connection("tom", "therapist")
    assert e.for_connection("tina", "therapist")
    assert not e.for_connection("alice", "client")
    e = ev(1, only_user="tom", only_roles=frozenset({"admin"}))
    assert not e.for_connection("tom", "therapist")


# ------------------------------------------------------------------ the log


def test_empty_log() -> None:
    log = EventLog(capacity=4)
    assert log.head == 0
    assert log.since(0) == ([], False)


def test_append_stamps_consecutive_seqs_and_keeps_everything_else() -> None:
    log = EventLog(capacity=10)
    original = Event("t", {"a": 1}, exclude_user="x", only_roles=frozenset({"admin"}),
                     only_user="y", close_code=4410)
    stamped = [log.append(original), log.append(ev(2)), log.append(ev(3))]
    assert [e.seq for e in stamped] == [1, 2, 3]
    assert log.head == 3
    assert original.seq == 0  # the caller's event is not changed
    first = stamped[0]
    assert (first.topic, first.frame, first.exclude_user, first.only_roles, first.only_user,
            first.close_code) == ("t", {"a": 1}, "x", frozenset({"admin"}), "y", 4410)


def test_since_returns_events_after_cursor_in_order() -> None:
    log = EventLog(capacity=10)
    for n in range(1, 6):
        log.append(ev(n))
    events, lost = log.since(0)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5] and not lost
    assert [e.frame["n"] for e in events] == [1, 2, 3, 4, 5]
    events, lost = log.since(3)
    assert [e.seq for e in events] == [4, 5] and not lost
    assert log.since(5) == ([], False)
    assert log.since(99) == ([], False)


def test_since_limit() -> None:
    log = EventLog(capacity=10)
    for n in range(1, 8):
        log.append(ev(n))
    events, lost = log.since(2, limit=3)
    assert [e.seq for e in events] == [3, 4, 5] and not lost
    events, _ = log.since(5, limit=3)
    assert [e.seq for e in events] == [6, 7]


def test_capacity_trims_and_reports_lost() -> None:
    log = EventLog(capacity=3)
    for n in range(1, 7):  # up to 2 x capacity is kept
        log.append(ev(n))
    assert [e.seq for e in log.since(0)[0]] == [1, 2, 3, 4, 5, 6]
    log.append(ev(7))  # over 2 x capacity: trimmed to the newest `capacity`
    events, lost = log.since(0)
    assert [e.seq for e in events] == [5, 6, 7]
    assert lost
    assert log.since(3)[1] is True  # seq 4 is gone
    events, lost = log.since(4)  # seq 5 is the next one: nothing lost
    assert [e.seq for e in events] == [5, 6, 7] and not lost
    assert log.head == 7


@pytest.mark.parametrize("capacity", [1, 2, 5, 16])
def test_long_run_never_loses_a_reader_that_keeps_up(capacity: int) -> None:
    log = EventLog(capacity=capacity)
    cursor, seen = 0, []
    for n in range(1, 200):
        log.append(ev(n))
        if n % capacity == 0:
            events, lost = log.since(cursor)
            assert not lost
            seen += [e.seq for e in events]
            cursor = log.head
    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) >= 199 - capacity


def test_log_keeps_within_its_byte_budget() -> None:
    log = EventLog(capacity=1000, max_bytes=10_000)
    for _ in range(100):
        log.append(Event("t", {"pad": "x" * 990}))  # 1,000 bytes encoded
    assert log.bytes <= 10_000
    kept, _ = log.since(log.head - 1)
    assert [e.seq for e in kept] == [100]  # the newest is always kept
    _, lost = log.since(0)
    assert lost  # a reader that far behind must resync


# ------------------------------------------------------- exact size accounting


def sent(frame: dict[str, object]) -> int:
    """Bytes of the frame as a gateway sends it (gateway/fanout.py's encoding)."""
    return len(json.dumps(frame, separators=(",", ":")).encode())


FRAMES = [
    {},
    {"type": "message", "body": {"text": "hi"}},
    {"type": "message", "body": {"v": list(range(5000))}},  # a list of numbers
    {"type": "message", "body": {"v": [1.2345678901234567e-300] * 1000}},  # long floats
    {"type": "message", "body": {"v": [[[[[{"a": [1, 2, [3, [4]]]}]]]]] * 200}},  # nesting
    {"type": "message", "body": {"t": "é€😀" * 300, "n": None, "b": [True, False]}},
    {"type": "metrics", "data": {f"k{i}": i * 1e9 for i in range(500)}},
]


@pytest.mark.parametrize("frame", FRAMES)
def test_size_is_the_exact_encoded_size(frame: dict[str, object]) -> None:
    log = EventLog(capacity=10)
    stamped = log.append(Event("t", frame))
    assert stamped.size == sent(frame)
    assert log.bytes == sent(frame)


def test_a_size_given_by_the_publisher_is_not_trusted() -> None:
    frame = {"v": list(range(10_000))}
    assert EventLog(10).append(Event("t", frame, size=16)).size == sent(frame)


def test_bytes_follow_appends_and_trims_exactly() -> None:
    log = EventLog(capacity=3)
    frames = [{"v": list(range(n * 100))} for n in range(1, 10)]
    for f in frames:
        log.append(Event("t", f))
        held, _ = log.since(log.head - len(log._events))
        assert log.bytes == sum(sent(e.frame) for e in held)


def test_numbers_and_lists_count_against_the_budget() -> None:
    """Frames of numbers and lists were counted as a few bytes each: the log held far
    more than its budget. Now the budget holds, whatever the frames are made of."""
    budget = 200_000
    log = EventLog(capacity=10_000, max_bytes=budget)
    frame = {"type": "message", "body": {"v": [[i, i * 1.5, [i]] for i in range(2000)]}}
    assert sent(frame) > 20_000
    for _ in range(100):
        log.append(Event("t", frame))
        assert log.bytes <= budget
        held, _ = log.since(log.head - len(log._events))
        assert sum(sent(e.frame) for e in held) <= budget
