"""The outbound queue of a connection is bounded in bytes (close 4503 past the budget)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from fastapi import WebSocket

from actors.directory import Directory
from confide.config import Settings
from confide.events import Event
from confide.metrics import GatewayStats
from confide.protocol import Hello
from gateway.fanout import Fanout, Outgoing
from gateway.pumps.base import Pump, PumpContext
from tests.unit.actors.support import who

BUDGET = 64 * 1024


class StuckSocket:
    """A consumer that reads nothing until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        await self.release.wait()
        self.sent.append(text)


class EchoPump(Pump):
    endpoint = "chat"


def pump(**overrides: Any) -> tuple[EchoPump, StuckSocket]:
    settings = Settings(jwt_secret="x" * 32, send_queue_bytes=BUDGET, **overrides)
    ctx = PumpContext(settings, GatewayStats(), cast(Fanout, None), cast(Directory, None))
    ws = StuckSocket()
    return EchoPump(cast(WebSocket, ws), ctx, who("alice"), Hello(type="hello"), "gw:a"), ws


def closing(p: Pump) -> tuple[int, str] | None:
    if not p._closing.done():
        return None
    close = p._closing.result()
    return int(close.close_code), close.reason


async def test_a_slow_consumer_is_closed_past_the_byte_budget_not_the_item_count() -> None:
    p, _ = pump()  # 1024 items allowed, 64 KiB
    frame = "x" * 10_000
    for _ in range(6):
        p.push(frame)
    assert closing(p) is None and p.queued_bytes == 60_000
    p.push(frame)  # 70,000 bytes > 64 KiB, with only 7 items queued
    assert closing(p) == (4503, "slow consumer")
    assert p.queued_bytes == 60_000  # the frame over the budget was not kept


async def test_fan_out_events_count_their_shared_text() -> None:
    p, _ = pump()
    out = Outgoing(Event("chat:s1", {"type": "status"}), "y" * 40_000)
    p.push(out)
    p.push(out)
    assert closing(p) == (4503, "slow consumer")


async def test_one_frame_larger_than_the_budget_passes_an_empty_queue() -> None:
    p, _ = pump()
    p.push("z" * (BUDGET * 2))  # e.g. a ciphertext frame of an analytics stream
    assert closing(p) is None
    p.push("small")
    assert closing(p) == (4503, "slow consumer")


async def test_written_frames_free_the_budget() -> None:
    p, ws = pump()
    writer = asyncio.create_task(p._write_loop())
    try:
        for _ in range(5):
            p.push("w" * 10_000)
        ws.release.set()
        await asyncio.wait_for(_until(lambda: p.queued_bytes == 0), 5)
        assert len(ws.sent) == 5
        for _ in range(6):
            p.push("v" * 10_000)
        assert closing(p) is None
    finally:
        writer.cancel()


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.01)
