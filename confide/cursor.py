"""`DeliveryCursor`: the offset rule of one reader of a chat log, sans-I/O (PROTOCOL.md, "Chat").

Offsets are consecutive integers per session and epoch, starting at 1, and a reader (the
gateway's writer for one connection, the SDK's chat client) delivers each one once, in order.
The cursor holds the epoch and `last`, the last offset delivered; it decides, the caller does
the I/O and then reports what it delivered. Deciding never moves the cursor:

    match cursor.decide(offset):
        case Skip():                 # delivered already (a replay overlap, a duplicate)
            return
        case Gap(after, upto):       # fetch (after, upto], deliver `cover(page).messages`
            ...                      # with `delivered(o)` each, then `delivered(upto)`
        case Deliver():
            pass
    send(message)
    cursor.delivered(offset)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Skip:
    """The message at `offset` was delivered already: drop it."""

    offset: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """The message at `offset` is the next one: deliver it, then `delivered(offset)`."""

    offset: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets in (`after`, `upto`] are missing. From `decide`: fetch and deliver them, then the
    message at `upto + 1`; what cannot be fetched any more is lost (`delivered(upto)`)."""

    after: int
    upto: int

    @property
    def size(self) -> int:
        """How many offsets are missing."""
        return self.upto - self.after


#: What `DeliveryCursor.decide` returns; `match` on it (`assert_never` for exhaustiveness).
Decision: TypeAlias = Skip | Deliver | Gap


@dataclass(frozen=True, slots=True)
class Page(Generic[M]):
    """A fetched page as `DeliveryCursor.cover` sees it."""

    #: The messages still to deliver, in offset order, one per offset.
    messages: tuple[M, ...]
    #: The offset ranges missing before and between them (and up to `upto` when given).
    holes: tuple[Gap, ...]


class DeliveryCursor:
    """Where one reader stands in a session's log: `epoch` (None before the first join) and
    `last`, the offset of the last message delivered (0: none; a fresh join starts at the
    log's latest offset, so that only newer messages are delivered)."""

    __slots__ = ("epoch", "last")

    def __init__(self, epoch: str | None = None, last: int = 0) -> None:
        self.epoch = epoch
        self.last = last

    def __repr__(self) -> str:
        return f"DeliveryCursor(epoch={self.epoch!r}, last={self.last})"

    def decide(self, offset: int) -> Decision:
        """What to do with an incoming message at `offset`. Does not move the cursor."""
        if offset <= self.last:
            return Skip(offset)
        if offset == self.last + 1:
            return Deliver(offset)
        return Gap(self.last, offset - 1)

    def delivered(self, offset: int) -> None:
        """Move past `offset`: delivered, or known to be lost. Never moves back."""
        if offset > self.last:
            self.last = offset

    def continues(self, epoch: str, latest: int) -> bool:
        """Whether a log in `epoch` whose newest offset is `latest` (a `welcome`, a re-join)
        continues this cursor's positions: the same epoch, and not behind `last`. When not,
        the old positions mean nothing and the reader should `reset`."""
        return epoch == self.epoch and latest >= self.last

    def reset(self, epoch: str, last: int = 0) -> None:
        """Start over in `epoch` (a first join or a new epoch), delivering after `last`."""
        self.epoch = epoch
        self.last = last

    def cover(
        self, page: Iterable[M], offset_of: Callable[[M], int], upto: int | None = None
    ) -> Page[M]:
        """Sort out a fetched page (any order, duplicates allowed): the messages after `last`
        (and up to `upto` when given), in offset order, the first copy of each, and the holes
        between them. With `upto` the page claims all of (`last`, `upto`], so a missing tail
        is a hole too. Does not move the cursor: `delivered` each message as it goes out."""
        fresh: dict[int, M] = {}
        for message in page:
            offset = offset_of(message)
            if offset > self.last and (upto is None or offset <= upto):
                fresh.setdefault(offset, message)
        holes: list[Gap] = []
        previous, ordered = self.last, sorted(fresh)
        for offset in ordered:
            if offset > previous + 1:
                holes.append(Gap(previous, offset - 1))
            previous = offset
        if upto is not None and upto > previous:
            holes.append(Gap(previous, upto))
        return Page(tuple(fresh[o] for o in ordered), tuple(holes))
