"""Group commit: many chat messages per store transaction, published in offset order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from confide.events import Event
from confide.store.base import StoredMessage


@dataclass
class _Item:
    message: StoredMessage
    event: Event
    done: asyncio.Future[None]


class GroupCommitter:
    """Queue messages; one task writes each batch in one transaction, then publishes it.

    If a batch fails, its messages and any queued behind them for the same sessions fail
    too, and `on_failure` is told which sessions must be reloaded from the store.
    """

    def __init__(
        self,
        write: Callable[[list[StoredMessage]], None],
        publish: Callable[[Event], None],
        on_failure: Callable[[set[str]], None],
        max_batch: int = 512,
    ) -> None:
        self._write = write
        self._publish = publish
        self._on_failure = on_failure
        self._max_batch = max_batch
        self._queue: list[_Item] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.committed = 0

    def tasks(self) -> list[asyncio.Task[None]]:
        """The drain task, while one runs."""
        return [self._task] if self._task is not None else []

    async def commit(self, message: StoredMessage, event: Event) -> None:
        item = _Item(message, event, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await item.done

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                await asyncio.to_thread(self._write, [i.message for i in batch])
            except Exception as exc:  # noqa: BLE001 - the failure goes to every waiter
                failed = {i.message.session_id for i in batch}
                doomed = batch + [i for i in self._queue if i.message.session_id in failed]
                self._queue = [i for i in self._queue if i.message.session_id not in failed]
                self._on_failure(failed)
                for i in doomed:
                    if not i.done.done():
                        i.done.set_exception(exc)
                continue
            self.batches += 1
            self.committed += len(batch)
            for i in batch:
                self._publish(i.event)
                if not i.done.done():
                    i.done.set_result(None)
