"""A connection's pending requests: each waits for the first frame its `match` accepts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from confide.client.errors import ClientClosed, ConnectionLost
from confide.client.events import Event


@dataclass(eq=False)
class Waiter:
    match: Callable[[Event], bool]
    future: asyncio.Future[Event]


class PendingRequests:
    """The requests of one `Connection` that wait for their answer frame."""

    def __init__(self) -> None:
        self._waiters: list[Waiter] = []

    def wait(self, match: Callable[[Event], bool]) -> Waiter:
        """A new waiter for the first frame `match` accepts."""
        waiter = Waiter(match, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        return waiter

    def discard(self, waiter: Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def answer(self, frame: Event) -> bool:
        """Give `frame` to the oldest waiter that matches it; True when one did."""
        for waiter in self._waiters:
            if not waiter.future.done() and waiter.match(frame):
                self._waiters.remove(waiter)
                waiter.future.set_result(frame)
                return True
        return False

    def fail(self, error: ClientClosed | ConnectionLost) -> None:
        """Raise `error` in every waiter: the connection ended."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
