"""The per-user in-flight submit budget of a gateway replica (count and bytes)."""

from __future__ import annotations

from gateway.pumps.analytics import UserSubmits


def test_count_and_bytes_bound_each_user_alone() -> None:
    b = UserSubmits()
    assert b.take("u", 10, max_count=2, max_bytes=100)
    assert b.take("u", 10, max_count=2, max_bytes=100)
    assert not b.take("u", 10, max_count=2, max_bytes=100)  # count
    assert b.take("v", 10, max_count=2, max_bytes=100)  # another user is not affected
    b.give("u", 10)
    assert not b.take("u", 95, max_count=2, max_bytes=100)  # bytes
    assert b.take("u", 90, max_count=2, max_bytes=100)
    b.give("u", 10)
    b.give("u", 90)
    assert b.count == {"v": 1} and b.bytes == {"v": 10}


def test_one_large_submit_always_fits_alone() -> None:
    b = UserSubmits()
    assert b.take("u", 1000, max_count=2, max_bytes=100)
    assert not b.take("u", 1, max_count=2, max_bytes=100)
