"""Latest-wins coalescing per key, at most one send per interval (sans-I/O).

Status frames (`typing`, `online`...) are ephemeral: a member needs the latest one, not
every one. A user with K sockets changing status fast would otherwise fan out every
change to every member. Per key (session, user) the first change is sent at once; later
ones within `interval` seconds replace each other, and the latest is sent when the
interval is over (the caller sets a timer for the delay `offer` returns, then `take`s).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._sent: dict[K, float] = {}
        self._pending: dict[K, V] = {}

    def offer(self, key: K, value: V, now: float) -> tuple[V | None, float | None]:
        """(the value to send now, or None; the delay after which to `take(key)`, when
        this value is the first one held back for `key`)."""
        last = self._sent.get(key)
        if key not in self._pending and (last is None or now - last >= self.interval):
            self._sent[key] = now
            return value, None
        first_held = key not in self._pending
        self._pending[key] = value  # the latest wins
        if not first_held:
            return None, None
        assert last is not None
        return None, max(0.0, last + self.interval - now)

    def take(self, key: K, now: float) -> V | None:
        """The latest value held back for `key` (its timer fired), to send now."""
        value = self._pending.pop(key, None)
        if value is not None:
            self._sent[key] = now
        return value

    def forget_before(self, cutoff: float) -> None:
        """Drop the send times older than `cutoff` of keys with nothing held (memory)."""
        for key in [k for k, t in self._sent.items() if t < cutoff and k not in self._pending]:
            del self._sent[key]

    @property
    def held(self) -> int:
        return len(self._pending)
