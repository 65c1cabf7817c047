"""Event delivery: callbacks registered with `on()` and bounded buffers read by async iterators."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from confide.client.errors import ClientClosed

#: A server frame, or a synthetic `state`/`close` event, as a JSON-ready dict.
Event = dict[str, Any]
Callback = Callable[[Event], "Awaitable[None] | None"]

log = logging.getLogger("confide.client")


class FrameQueue:
    """A bounded buffer of events (the oldest is dropped when full) that readers wait on.

    `get(type)` takes the oldest event of that type and leaves the others in place. Once
    closed, readers get what is left and then the `ClientClosed` given to `close()`.
    """

    def __init__(self, maxlen: int) -> None:
        self._items: deque[Event] = deque(maxlen=maxlen)
        self._changed = asyncio.Event()
        self._closed: ClientClosed | None = None

    def put(self, event: Event) -> None:
        self._items.append(event)
        self._wake()

    def close(self, reason: ClientClosed) -> None:
        self._closed = reason
        self._wake()

    def reopen(self) -> None:
        self._closed = None

    async def get(self, type: str | None = None) -> Event:
        while True:
            for i, event in enumerate(self._items):
                if type is None or event.get("type") == type:
                    del self._items[i]
                    return event
            if self._closed is not None:
                raise ClientClosed(self._closed.code, self._closed.reason)
            await self._changed.wait()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class EventHub:
    """Callbacks by event type (`"*"` gets every event) plus one buffer for `events()`."""

    def __init__(self, buffer: int) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self.queue = FrameQueue(buffer)
        self._tasks: set[asyncio.Future[None]] = set()

    def on(self, type: str, fn: Callback) -> Callable[[], None]:
        """Call `fn(event)` for each event of `type`; returns a function that removes it."""
        callbacks = self._callbacks.setdefault(type, [])
        callbacks.append(fn)

        def remove() -> None:
            if fn in callbacks:
                callbacks.remove(fn)

        return remove

    def emit(self, event: Event) -> None:
        kind = str(event.get("type"))
        for fn in [*self._callbacks.get(kind, ()), *self._callbacks.get("*", ())]:
            try:
                result = fn(event)
            except Exception:
                log.exception("callback for a %r event failed", kind)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)
        self.queue.put(event)

    async def iterate(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.queue.get()
            except ClientClosed:
                return

    def _callback_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async callback failed", exc_info=task.exception())
