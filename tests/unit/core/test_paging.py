"""Pages of frames under a byte budget."""

from __future__ import annotations

from confide.paging import encoded_size, newest_within, oldest_within


def frames(*sizes: int) -> list[dict[str, str]]:
    return [{"t": "x" * (n - 8)} for n in sizes]  # {"t":"..."} is n bytes


def test_sizes_are_the_encoded_json() -> None:
    assert [encoded_size(f) for f in frames(10, 100)] == [10, 100]


def test_newest_within_keeps_the_newest_that_fit() -> None:
    page = frames(100, 100, 100, 100)
    assert newest_within(page, 250) == page[2:]
    assert newest_within(page, 400) == page
    assert newest_within(page, 10) == page[3:]  # at least one
    assert newest_within([], 10) == []


def test_oldest_within_keeps_the_oldest_that_fit() -> None:
    page = frames(100, 100, 100, 100)
    assert oldest_within(page, 250) == page[:2]
    assert oldest_within(page, 400) == page
    assert oldest_within(page, 10) == page[:1]
    assert oldest_within([], 10) == []
