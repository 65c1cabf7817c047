"""Status frames are coalesced per user: the latest wins, at most one per interval."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from actors.host import Host

from .support import WAIT, frames, who

ALICE, BOB = who("alice"), who("bob")


async def test_a_status_flood_fans_out_the_first_and_the_latest(
    make_host: Callable[..., Host],
) -> None:
    host = make_host(status_interval_s=0.25)
    for conn, user in (("gw1:a1", ALICE), ("gw1:a2", ALICE), ("gw1:b", BOB)):
        await host.chat_join("s1", conn, user, None, False)
    head = host.log.head
    flood = ["typing", "idle", "typing", "away", "typing", "idle"] * 5
    for i, status in enumerate(flood):  # from both of alice's sockets
        await host.chat_status("s1", f"gw1:a{1 + i % 2}", ALICE, status)  # type: ignore[arg-type]

    def statuses() -> list[str]:
        events, _ = host.log.since(head)
        return [f["status"] for f in frames(events, "status")]

    assert statuses() == ["typing"]  # the first at once, the rest held back

    async def second() -> None:
        while len(statuses()) < 2:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(second(), WAIT)
    assert statuses() == ["typing", "idle"]  # then only the latest
    await host.chat_status("s1", "gw1:b", BOB, "away")  # another user is not held back
    assert statuses() == ["typing", "idle", "away"]
    members = {m["user"]: m["status"] for m in (await host.session("s1")).members()}
    assert members == {"alice": "idle", "bob": "away"}
