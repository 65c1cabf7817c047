"""Events: what an entity publishes for the gateways to fan out to connections."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Event:
    """One frame for every connection subscribed to `topic`, narrowed by the filters.

    `seq` is given by the host's event log; entities leave it 0.
    """

    topic: str
    frame: dict[str, Any]
    exclude_user: str | None = None
    only_roles: frozenset[str] | None = None
    only_user: str | None = None
    #: The gateway closes the matching connections with this code after the frame.
    close_code: int | None = None
    seq: int = 0
    #: Bytes of the frame as sent (its JSON encoding), set by the event log.
    size: int = 0
    #: An instruction to the gateways instead of a frame for clients:
    #: "large_frames" (the session's connections now take 8 MiB frames).
    control: Literal["large_frames"] | None = None

    def for_connection(self, user: str, role: str) -> bool:
        if self.exclude_user is not None and user == self.exclude_user:
            return False
        if self.only_user is not None and user != self.only_user:
            return False
        return self.only_roles is None or role in self.only_roles


def encoded_size(frame: dict[str, Any]) -> int:
    """Exact bytes of `frame` as the gateways send it: compact JSON, ASCII-escaped (so one
    character is one byte), the encoding `gateway.fanout` uses."""
    try:
        return len(json.dumps(frame, separators=(",", ":")))
    except (TypeError, ValueError):  # not JSON: no frame is sent, count its repr instead
        return len(repr(frame))


class EventLog:
    """A bounded, ordered log of events with a cursor per reader (sans-I/O).

    Readers ask for everything after their cursor; `lost` is True when the log no
    longer holds events a reader had not yet seen (it must resync from the store).
    The log keeps at most `capacity` events and at most `max_bytes` of them, counted
    exactly (each event's encoded size, computed once as it is appended); the newest
    event is always kept.
    """

    def __init__(self, capacity: int, max_bytes: int = 256 * 2**20) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._events: list[Event] = []
        self._next_seq = 1

    @property
    def bytes(self) -> int:
        """Encoded bytes of the events held."""
        return self._bytes

    @property
    def head(self) -> int:
        """The seq of the newest event (0 when none yet)."""
        return self._next_seq - 1

    def append(self, event: Event) -> Event:
        stamped = dataclasses.replace(event, seq=self._next_seq,
                                      size=encoded_size(event.frame))
        self._next_seq += 1
        self._events.append(stamped)
        self._bytes += stamped.size
        if len(self._events) > 2 * self._capacity or self._bytes > self._max_bytes:
            # Trim to `capacity` events and half the byte budget (amortized: not each time).
            drop = max(0, len(self._events) - self._capacity)
            dropped = sum(e.size for e in self._events[:drop])
            while self._bytes - dropped > self._max_bytes // 2 and drop < len(self._events) - 1:
                dropped += self._events[drop].size
                drop += 1
            del self._events[:drop]
            self._bytes -= dropped
        return stamped

    def since(self, cursor: int, limit: int = 5000) -> tuple[list[Event], bool]:
        """Events with seq > cursor (at most `limit`), and whether some were lost."""
        if not self._events or cursor >= self.head:
            return [], False
        first = self._events[0].seq
        lost = cursor + 1 < first
        start = max(0, cursor + 1 - first)
        return self._events[start : start + limit], lost
