"""Fan-out in a gateway replica: one long-poll loop per host feeds local subscribers."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from actors.directory import Directory
from confide import strictjson
from confide.events import Event

log = logging.getLogger("confide.fanout")


@dataclass(frozen=True)
class Outgoing:
    """An event with its frame serialized once for every local subscriber of the replica
    (empty for a control event, which is no frame)."""

    event: Event
    text: str


class Subscriber(Protocol):
    def deliver(self, out: Outgoing) -> bool:
        """Take one event for this connection; never blocks. True when it waits for a
        `flush` (after the poll answer's last event) instead of being queued."""

    async def flush(self) -> None:
        """Send what `deliver` took, at once where no wait is needed."""

    def resync(self) -> None:
        """The host restarted or the log overran: catch up from the store."""


class Fanout:
    def __init__(self, directory: Directory, poll_timeout_s: float, reader: str) -> None:
        self._directory = directory
        self._reader = reader
        self._timeout = poll_timeout_s
        self._topics: dict[str, set[Subscriber]] = defaultdict(set)
        self._routes: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.polls = 0
        self.events = 0

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._loop(k)) for k in range(len(self._directory.hosts))
            ]

    def subscribe(self, topic: str, sub: Subscriber, route: str | None = None) -> None:
        """Deliver `topic`'s events to `sub`; `route` names the entity whose host publishes
        them (the topic itself by default), so a restart of that host resyncs `sub`."""
        self._topics[topic].add(sub)
        self._routes[topic] = route or topic

    def unsubscribe(self, topic: str, sub: Subscriber) -> None:
        subs = self._topics.get(topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._topics[topic]
                self._routes.pop(topic, None)

    def subscribers(self) -> int:
        return sum(len(s) for s in self._topics.values())

    def _resync(self, index: int) -> None:
        for topic, subs in list(self._topics.items()):
            if self._directory.index_for(self._routes.get(topic, topic)) == index:
                for sub in list(subs):
                    sub.resync()

    async def _loop(self, index: int) -> None:
        host = self._directory.hosts[index]
        incarnation: str | None = None
        cursor = 0
        backoff = 0.1
        while True:
            try:
                res = await host.poll(self._reader, incarnation, cursor, self._timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the host is restarting: poll again
                log.warning("poll of host %d failed (%s); retrying", index, type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            self.polls += 1
            if res.incarnation != incarnation:
                if incarnation is not None:
                    log.info("host %d restarted: resyncing its subscribers", index)
                    self._resync(index)
                incarnation = res.incarnation
            elif res.lost:
                log.warning("gateway fell behind host %d: resyncing", index)
                self._resync(index)
            cursor = res.cursor
            taken: dict[int, Subscriber] = {}
            for event in res.events:
                self.events += 1
                subs = self._topics.get(event.topic)
                if subs:
                    text = "" if event.control else strictjson.dumps(event.frame)
                    out = Outgoing(event, text)
                    for sub in list(subs):
                        if sub.deliver(out):
                            taken[id(sub)] = sub
            for sub in taken.values():
                # Written from here, with no task switch per connection, where possible.
                await sub.flush()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
