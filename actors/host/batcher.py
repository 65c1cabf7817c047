"""`Batcher`: at most `max_inflight` calls in flight (one by default), each carrying
everything queued since the last one left.

A gateway replica's connections all share one batcher per (host, operation): under load
each Ray call carries many items, when idle an item leaves at once. With one call in
flight, items keep the order they were added in; each gets exactly one answer (the
call's, or one made from its error). Several calls in flight suit operations whose
answers take long and whose order does not matter (encrypted contributions wait for
their fold).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("confide.host")

I = TypeVar("I")  # noqa: E741 - item
A = TypeVar("A")  # answer


class Batcher(Generic[I, A]):
    def __init__(
        self,
        call: Callable[[list[I]], Awaitable[list[A]]],
        failed: Callable[[I, Exception], A],
        max_batch: int,
        max_inflight: int = 1,
    ) -> None:
        self._call = call
        self._failed = failed
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._pending: list[tuple[I, Callable[[A], None]]] = []
        self._senders: set[asyncio.Task[None]] = set()
        #: Calls made and items they carried.
        self.calls = 0
        self.items = 0

    def add(self, item: I, on_answer: Callable[[A], None]) -> None:
        """Queue `item`; `on_answer` gets its answer on this event loop."""
        self._pending.append((item, on_answer))
        # A sender whose loop found nothing left is done at once (its done-callbacks may
        # not have run yet): only live ones count.
        self._senders = {s for s in self._senders if not s.done()}
        if len(self._senders) < self._max_inflight:
            self._senders.add(asyncio.create_task(self._drain()))

    async def ask(self, item: I) -> A:
        """Queue `item` and wait for its answer."""
        fut: asyncio.Future[A] = asyncio.get_running_loop().create_future()

        def answered(answer: A) -> None:
            if not fut.done():  # the waiter may have been cancelled
                fut.set_result(answer)

        self.add(item, answered)
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            items = [item for item, _ in batch]
            try:
                answers = await self._call(items)
            except Exception as exc:  # noqa: BLE001 - every item of the batch is answered
                answers = [self._failed(item, exc) for item in items]
            self.calls += 1
            self.items += len(batch)
            for (_, on_answer), answer in zip(batch, answers, strict=True):
                try:
                    on_answer(answer)
                except Exception as exc:  # noqa: BLE001 - one connection must not stop the others
                    # The type only: an exception's text could carry a frame's content.
                    log.error("a connection failed to take its answer: %s",
                              type(exc).__name__)
