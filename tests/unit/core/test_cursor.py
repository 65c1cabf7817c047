"""DeliveryCursor: skip, deliver, gap; epochs; pages; every offset once, in order."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import assert_never

from confide.cursor import Decision, Deliver, DeliveryCursor, Gap, Page, Skip


def ident(offset: int) -> int:
    return offset


def test_decide_skip_deliver_gap() -> None:
    cursor = DeliveryCursor("e1", 3)
    assert cursor.decide(2) == Skip(2) and cursor.decide(3) == Skip(3)
    assert cursor.decide(4) == Deliver(4)
    assert cursor.decide(7) == Gap(3, 6) and Gap(3, 6).size == 3
    assert (cursor.epoch, cursor.last) == ("e1", 3)  # deciding never moves it


def test_fresh_cursor() -> None:
    cursor = DeliveryCursor()
    assert cursor.epoch is None and cursor.last == 0
    assert cursor.decide(1) == Deliver(1) and cursor.decide(0) == Skip(0)
    assert repr(cursor) == "DeliveryCursor(epoch=None, last=0)"


def test_delivered_never_moves_back() -> None:
    cursor = DeliveryCursor("e1")
    cursor.delivered(1)
    cursor.delivered(5)  # 2..4 known lost
    cursor.delivered(3)
    assert cursor.last == 5 and cursor.decide(6) == Deliver(6)


def test_continues_and_reset() -> None:
    cursor = DeliveryCursor("e1", 5)
    assert cursor.continues("e1", 5) and cursor.continues("e1", 9)
    assert not cursor.continues("e1", 4)  # the log is behind us: positions mean nothing
    assert not cursor.continues("e2", 9)
    assert not DeliveryCursor().continues("e1", 0)  # first join
    cursor.reset("e2", 3)
    assert (cursor.epoch, cursor.last) == ("e2", 3) and cursor.decide(4) == Deliver(4)
    cursor.reset("e3")
    assert cursor.last == 0


def test_results_are_frozen_and_match_friendly() -> None:
    with pytest.raises(AttributeError):
        Gap(1, 2).upto = 3  # type: ignore[misc]

    def describe(decision: Decision) -> str:
        match decision:
            case Skip(offset):
                return f"skip {offset}"
            case Deliver(offset):
                return f"deliver {offset}"
            case Gap(after, upto):
                return f"fetch ({after}, {upto}]"
            case _:
                assert_never(decision)

    cursor = DeliveryCursor("e", 2)
    assert [describe(cursor.decide(o)) for o in (1, 3, 9)] == [
        "skip 1", "deliver 3", "fetch (2, 8]",
    ]


def test_cover_sorts_dedupes_and_finds_holes() -> None:
    cursor = DeliveryCursor("e1", 2)
    page: list[dict[str, Any]] = [
        {"o": 6, "n": "a"}, {"o": 1}, {"o": 4}, {"o": 6, "n": "b"}, {"o": 3}, {"o": 2},
    ]
    covered = cursor.cover(page, lambda m: m["o"])
    assert [m["o"] for m in covered.messages] == [3, 4, 6]
    assert covered.messages[-1]["n"] == "a"  # the first copy wins
    assert covered.holes == (Gap(4, 5),)
    assert cursor.last == 2  # covering never moves it


def test_cover_with_upto_claims_the_whole_range() -> None:
    cursor = DeliveryCursor("e1", 2)
    assert cursor.cover([5, 9, 4], ident, upto=7) == Page((4, 5), (Gap(2, 3), Gap(5, 7)))
    assert cursor.cover([], ident, upto=4) == Page((), (Gap(2, 4),))
    assert cursor.cover([], ident) == Page((), ())
    assert cursor.cover([1, 2], ident, upto=2) == Page((), ())


# ------------------------------------------------------------------ properties


class Reader:
    """A reader in the manner of the gateway's writer: live messages through `decide`, gaps
    filled from a store in pages (any order, duplicates), all through one cursor."""

    def __init__(self, stored: set[int], page_size: int, rng: random.Random) -> None:
        self.stored, self.page_size, self.rng = stored, page_size, rng
        self.cursor = DeliveryCursor("e1")
        self.out: list[int] = []

    def fetch(self, after: int, upto: int) -> list[int]:
        """Up to `page_size` stored offsets in (after, upto], shuffled, some twice, plus
        some already delivered."""
        page = sorted(o for o in self.stored if after < o <= upto)[: self.page_size]
        page += self.rng.sample(page, len(page) // 2) + self.out[-2:]
        self.rng.shuffle(page)
        return page

    def fill(self, upto: int) -> None:
        while self.cursor.last < upto:
            covered = self.cursor.cover(self.fetch(self.cursor.last, upto), ident)
            if not covered.messages:
                self.cursor.delivered(upto)  # no longer retained: lost
                break
            for offset in covered.messages:
                self.deliver(offset)

    def deliver(self, offset: int) -> None:
        self.out.append(offset)
        self.cursor.delivered(offset)

    def receive(self, offset: int) -> None:
        decision = self.cursor.decide(offset)
        match decision:
            case Skip():
                return
            case Gap(_, upto):
                self.fill(upto)
            case Deliver():
                pass
            case _:
                assert_never(decision)
        self.deliver(offset)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 60),
    copies=st.lists(st.integers(1, 60), max_size=40),
    page_size=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_interleaving_delivers_each_offset_once_in_order(
    n: int, copies: list[int], page_size: int, seed: int
) -> None:
    rng = random.Random(seed)
    stream = list(range(1, n + 1)) + [c for c in copies if c <= n]  # every offset, dups
    rng.shuffle(stream)
    reader = Reader(set(range(1, n + 1)), page_size, rng)
    for offset in stream:
        reader.receive(offset)
    assert reader.out == list(range(1, n + 1))
    assert reader.cursor.last == n


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 60),
    seen=st.lists(st.integers(1, 60), min_size=1, max_size=40),
    stored=st.sets(st.integers(1, 60)),
    page_size=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_with_holes_in_the_store_order_holds_and_nothing_stored_is_missed(
    n: int, seen: list[int], stored: set[int], page_size: int, seed: int
) -> None:
    stream = [o for o in seen if o <= n] or [n]
    reader = Reader({o for o in stored if o <= n} | set(stream), page_size, random.Random(seed))
    for offset in stream:
        reader.receive(offset)
    top = max(stream)
    assert reader.out == sorted(set(reader.out))  # strictly increasing: once each, in order
    assert set(reader.out) == {o for o in reader.stored if o <= top}


@settings(max_examples=300, deadline=None)
@given(
    last=st.integers(0, 30),
    page=st.lists(st.integers(0, 40), max_size=30),
    upto=st.one_of(st.none(), st.integers(0, 40)),
)
def test_cover_messages_and_holes_partition_the_range(
    last: int, page: list[int], upto: int | None
) -> None:
    covered = DeliveryCursor("e", last).cover(page, ident, upto)
    top = max(upto if upto is not None else last, *covered.messages, last)
    expected = sorted({o for o in page if o > last and (upto is None or o <= upto)})
    assert list(covered.messages) == expected
    missing = [o for hole in covered.holes for o in range(hole.after + 1, hole.upto + 1)]
    assert all(hole.size > 0 for hole in covered.holes)
    assert sorted(missing + expected) == list(range(last + 1, top + 1))
    assert not set(missing) & set(expected)
