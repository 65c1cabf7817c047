"""Fanout (gateway/fanout.py): a gateway replica's long-poll loops, with fake hosts.

A fake host answers `poll(...)` from a queue the test fills; its next poll call
means the previous answer was fully handled (the loop handles an answer synchronously).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.host.messages import Polled
from confide.events import Event
from gateway.fanout import Fanout, Outgoing
from tests.unit.actors.support import until

TIMEOUT = 30.0


class FakeHost:
    """Stands in for a `HostClient`: its `poll` answers what the test queued."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[Polled | Exception] = asyncio.Queue()
        self.calls: list[tuple[str, str | None, int, float]] = []

    async def poll(
        self, reader: str, incarnation: str | None, cursor: int, timeout: float
    ) -> Polled:
        self.calls.append((reader, incarnation, cursor, timeout))
        answer = await self.answers.get()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def answer(
        self, incarnation: str, events: list[Event] = (), cursor: int = 0,  # type: ignore[assignment]
        lost: bool = False,
    ) -> None:
        self.answers.put_nowait(Polled(incarnation, list(events), cursor, lost))

    async def polled(self, n: int) -> None:
        """Wait until the host was polled `n` times (all answers before were handled)."""
        await until(lambda: len(self.calls) >= n)


class FakeDirectory:
    def __init__(self, hosts: int, routes: dict[str, int]) -> None:
        self.hosts = [FakeHost() for _ in range(hosts)]
        self._routes = routes

    def index_for(self, entity_id: str) -> int:
        return self._routes[entity_id]


class Sub:
    def __init__(self) -> None:
        self.got: list[Outgoing] = []
        self.resyncs = 0
        self.flushes = 0

    def deliver(self, out: Outgoing) -> bool:
        self.got.append(out)
        return True

    async def flush(self) -> None:
        self.flushes += 1

    def resync(self) -> None:
        self.resyncs += 1


Wired = tuple[Fanout, "FakeDirectory"]
ROUTES = {"chat:a": 0, "chat:b": 1, "chat:zzz": 0}


@pytest.fixture
async def wired() -> AsyncIterator[tuple[Fanout, FakeDirectory]]:
    directory = FakeDirectory(2, ROUTES)
    fanout = Fanout(directory, TIMEOUT, "gw1")  # type: ignore[arg-type]
    yield fanout, directory
    await fanout.stop()


def ev(seq: int, topic: str, **frame: Any) -> Event:
    return Event(topic, {"type": "message", "offset": seq, **frame}, seq=seq)


async def test_events_reach_only_their_topic_serialized_once(wired: Wired) -> None:
    fanout, directory = wired
    a1, a2, b1 = Sub(), Sub(), Sub()
    fanout.subscribe("chat:a", a1)
    fanout.subscribe("chat:a", a2)
    fanout.subscribe("chat:b", b1)
    fanout.start()
    host = directory.hosts[0]
    host.answer("i1")
    e1, e2, e3 = ev(1, "chat:a", body={"t": "é"}), ev(2, "chat:b"), ev(3, "chat:zzz")
    host.answer("i1", [e1, e2, e3], cursor=3)
    await host.polled(3)
    assert [o.event for o in a1.got] == [e1]
    assert a2.got[0] is a1.got[0]
    assert a2.got[0].text is a1.got[0].text  # one serialization for every subscriber
    assert a1.got[0].text == json.dumps(e1.frame, separators=(",", ":"))
    assert [o.event for o in b1.got] == [e2]
    assert (a1.resyncs, a2.resyncs, b1.resyncs) == (0, 0, 0)
    assert host.calls == [("gw1", None, 0, TIMEOUT), ("gw1", "i1", 0, TIMEOUT),
                          ("gw1", "i1", 3, TIMEOUT)]


async def test_unsubscribed_connections_get_nothing(wired: Wired) -> None:
    fanout, directory = wired
    a1, a2 = Sub(), Sub()
    fanout.subscribe("chat:a", a1)
    fanout.subscribe("chat:a", a2)
    fanout.unsubscribe("chat:a", a1)
    fanout.start()
    host = directory.hosts[0]
    host.answer("i1", [ev(1, "chat:a")], cursor=1)
    await host.polled(2)
    assert (len(a1.got), len(a2.got)) == (0, 1)
    assert fanout.subscribers() == 1


async def test_a_restarted_host_resyncs_only_the_subscribers_it_serves(wired: Wired) -> None:
    fanout, directory = wired
    on_a, on_b, routed_a = Sub(), Sub(), Sub()
    fanout.subscribe("chat:a", on_a)
    fanout.subscribe("chat:b", on_b)
    fanout.subscribe("stream:session:a", routed_a, route="chat:a")  # served by host 0
    fanout.start()
    h0, h1 = directory.hosts
    h0.answer("i1")  # the first answer only sets the incarnation: no resync
    h1.answer("j1")
    await h0.polled(2)
    await h1.polled(2)
    assert (on_a.resyncs, on_b.resyncs, routed_a.resyncs) == (0, 0, 0)
    h0.answer("i2", cursor=7)  # host 0 restarted
    await h0.polled(3)
    assert (on_a.resyncs, on_b.resyncs, routed_a.resyncs) == (1, 0, 1)
    assert h0.calls[-1] == ("gw1", "i2", 7, TIMEOUT)


async def test_a_failed_poll_is_retried_and_a_restart_seen_after_it(wired: Wired) -> None:
    fanout, directory = wired
    on_a = Sub()
    fanout.subscribe("chat:a", on_a)
    fanout.start()
    host = directory.hosts[0]
    host.answer("i1", cursor=4)
    host.answers.put_nowait(RuntimeError("actor died"))
    host.answer("i2", cursor=0)
    await host.polled(4)
    assert host.calls[1:3] == [("gw1", "i1", 4, TIMEOUT)] * 2  # the same position again
    assert on_a.resyncs == 1


async def test_lost_events_resync_the_hosts_subscribers(wired: Wired) -> None:
    fanout, directory = wired
    on_a, on_b = Sub(), Sub()
    fanout.subscribe("chat:a", on_a)
    fanout.subscribe("chat:b", on_b)
    fanout.start()
    h0 = directory.hosts[0]
    h0.answer("i1")
    e9 = ev(9, "chat:a")
    h0.answer("i1", [e9], cursor=9, lost=True)
    await h0.polled(3)
    assert (on_a.resyncs, on_b.resyncs) == (1, 0)
    assert [o.event for o in on_a.got] == [e9]
    assert h0.calls[-1] == ("gw1", "i1", 9, TIMEOUT)
