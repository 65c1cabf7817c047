"""ChatPump's live path (gateway/pumps/chat.py): events written straight from the fan-out
when nothing may be overtaken, through the queue and the writer otherwise."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from fastapi import WebSocket

from actors.directory import Directory
from confide.config import Settings
from confide.events import Event
from confide.metrics import GatewayStats
from confide.protocol import Hello
from gateway.fanout import Fanout, Outgoing
from gateway.pumps.base import PumpContext
from gateway.pumps.chat import ChatPump
from tests.unit.actors.support import who


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


class NoHosts:
    def host_for(self, entity: str) -> None:
        return None


def pump() -> tuple[ChatPump, FakeSocket]:
    settings = Settings(jwt_secret="x" * 32)
    ctx = PumpContext(settings, GatewayStats(), cast(Fanout, None), cast(Directory, NoHosts()))
    ws = FakeSocket()
    p = ChatPump(cast(WebSocket, ws), ctx, who("alice"), Hello(type="hello"), "gw1:a",
                 session_id="s1")
    p.cursor.reset("e1", 0)
    p._live = True  # as after `open`
    return p, ws


def message(offset: int) -> Outgoing:
    frame = {"type": "message", "session_id": "s1", "offset": offset, "epoch": "e1",
             "id": f"m{offset}", "sender": "bob", "ts": 1.0, "body": {}, "encrypted": False}
    return Outgoing(Event("chat:s1", frame), json.dumps(frame))


def offsets(items: list[Any]) -> list[int]:
    return [int(i.event.frame["offset"]) for i in items]


async def test_in_order_events_are_written_at_once_and_duplicates_dropped() -> None:
    p, ws = pump()
    for offset in (1, 2, 2, 3):
        assert p.deliver(message(offset))
    await p.flush()
    assert [f["offset"] for f in ws.sent] == [1, 2, 3]
    assert p.cursor.last == 3 and p.queue.empty()


async def test_a_gap_hands_that_event_and_the_rest_to_the_writer() -> None:
    p, ws = pump()
    for offset in (1, 3, 4):
        p.deliver(message(offset))
    await p.flush()
    assert [f["offset"] for f in ws.sent] == [1]
    queued = [p.queue.get_nowait() for _ in range(p.queue.qsize())]
    assert offsets(queued) == [3, 4]  # the writer fills offset 2 from the store first


async def test_nothing_overtakes_what_is_queued_or_being_written() -> None:
    p, ws = pump()
    p.push_frame(Hello(type="hello"))  # anything already queued (an ack, a resync...)
    p.deliver(message(1))
    await p.flush()
    assert ws.sent == [] and p.queue.qsize() == 2
    p2, ws2 = pump()
    p2._writing = True  # the writer is in the middle of a catch-up
    p2.deliver(message(1))
    await p2.flush()
    assert ws2.sent == [] and offsets([p2.queue.get_nowait()]) == [1]


async def test_nothing_is_sent_directly_before_welcome_and_replay() -> None:
    p, ws = pump()
    p._live = False  # still in `open`: events wait behind the welcome and the replay
    p.deliver(message(1))
    await p.flush()
    assert ws.sent == [] and p.queue.qsize() == 1


async def test_events_that_change_the_connection_go_to_the_writer() -> None:
    p, ws = pump()
    p.deliver(Outgoing(Event("chat:s1", {}, control="large_frames"), ""))
    ended = {"type": "ended", "by": "dr"}
    p.deliver(Outgoing(Event("chat:s1", ended, close_code=4410), json.dumps(ended)))
    await p.flush()
    assert ws.sent == [] and p.queue.qsize() == 2


async def test_events_for_other_users_are_not_taken() -> None:
    p, _ = pump()
    status = {"type": "status", "user": "alice", "status": "typing", "ts": 1.0}
    assert not p.deliver(Outgoing(Event("chat:s1", status, exclude_user="alice"),
                                  json.dumps(status)))


async def test_a_socket_that_is_not_writable_gets_live_events_through_its_queue() -> None:
    """The fan-out never waits for one slow client: its events go to its own queue."""
    p, ws = pump()
    p._writable = asyncio.Event()  # uvicorn's flag: the client's socket buffer is full
    for offset in (1, 2):
        p.deliver(message(offset))
    await p.flush()
    assert ws.sent == [] and offsets([p.queue.get_nowait() for _ in range(2)]) == [1, 2]
    p.cursor.delivered(2)  # as the writer would have done
    p._writable.set()
    p.deliver(message(3))
    await p.flush()  # writable again (and nothing queued): written at once
    assert [f["offset"] for f in ws.sent] == [3]
