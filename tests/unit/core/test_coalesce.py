"""Latest-wins coalescing, at most one send per interval and key."""

from __future__ import annotations

import pytest

from confide.coalesce import Coalescer


def test_first_goes_at_once_then_the_latest_after_the_interval() -> None:
    c: Coalescer[str, str] = Coalescer(0.25)
    assert c.offer("alice", "typing", 10.0) == ("typing", None)
    now, delay = c.offer("alice", "idle", 10.1)
    assert now is None and delay == pytest.approx(0.15)
    assert c.offer("alice", "away", 10.2) == (None, None)  # a timer is already set
    assert c.offer("alice", "online", 10.3) == (None, None)  # still held: the latest wins
    assert c.take("alice", 10.35) == "online" and c.held == 0
    assert c.take("alice", 10.4) is None  # nothing more held
    now, delay = c.offer("alice", "idle", 10.5)  # 0.15 s after the last send
    assert now is None and delay == pytest.approx(0.1)


def test_keys_are_independent_and_a_quiet_key_sends_at_once() -> None:
    c: Coalescer[str, str] = Coalescer(0.25)
    assert c.offer("alice", "typing", 1.0)[0] == "typing"
    assert c.offer("bob", "typing", 1.01)[0] == "typing"
    assert c.offer("alice", "idle", 1.3)[0] == "idle"


def test_zero_interval_coalesces_nothing_and_old_keys_are_forgotten() -> None:
    c: Coalescer[str, int] = Coalescer(0.0)
    assert [c.offer("k", i, 5.0)[0] for i in range(3)] == [0, 1, 2]
    c.forget_before(6.0)
    assert c.offer("k", 9, 6.0) == (9, None)
