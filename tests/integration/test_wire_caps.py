"""Connection budgets (PROTOCOL 1.1): per user across the cluster, pending handshakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.integration.conftest import Server, make_settings
from tests.integration.wsclient import TIMEOUT, Raw

CAP = 3
PENDING = 3


@pytest.fixture(scope="module")
def capped(serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("caps")
    # poll_timeout_s 2: a dead replica's lease on the hosts runs out after 3 × 2 + 5 s
    srv = Server(make_settings(data, max_connections_per_user=CAP, poll_timeout_s=2.0,
                               max_pending_handshakes=PENDING, hello_timeout_s=3.0), serve_port)
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()


async def _close_of(ws: ClientConnection) -> tuple[int, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code, exc.rcvd.reason


async def test_connections_per_user_are_capped_across_endpoints(capped: Server) -> None:
    token = capped.token("capped-user", sessions=["s-cap"])
    paths = ["/ws/chat/s-cap", "/ws/notifications", "/ws/analytics"]
    open_ = [(await Raw.open(capped.ws(p), token))[0] for p in paths]  # CAP of them
    async with connect(capped.ws("/ws/notifications")) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        assert await _close_of(ws) == (4429, "too many connections")
    other, welcome = await Raw.open(capped.ws("/ws/notifications"), capped.token("someone"))
    assert welcome["type"] == "welcome"  # other users are not affected
    await other.close()
    await open_[0].close()  # a released slot is free again (the release is asynchronous)

    async def reopen() -> Raw:
        while True:
            try:
                return (await Raw.open(capped.ws("/ws/notifications"), token))[0]
            except ConnectionClosed as exc:  # not released yet: still at the cap
                assert exc.rcvd is not None and exc.rcvd.code == 4429
                await asyncio.sleep(0.1)

    again = await asyncio.wait_for(reopen(), TIMEOUT)
    await asyncio.gather(again.close(), *(r.close() for r in open_[1:]))


async def test_pending_handshakes_have_a_per_replica_budget(capped: Server) -> None:
    silent = [await connect(capped.ws("/ws/notifications")) for _ in range(PENDING)]
    try:
        async with connect(capped.ws("/ws/notifications")) as extra:
            assert (await _close_of(extra))[0] == 4503  # over the budget: refused at once
        codes = await asyncio.gather(*(_close_of(ws) for ws in silent))
        assert [c for c, _ in codes] == [4408] * PENDING  # no hello within the timeout
    finally:
        for ws in silent:
            await ws.close()
    raw, welcome = await Raw.open(capped.ws("/ws/notifications"), capped.token("later"))
    assert welcome["type"] == "welcome"  # the budget is free again
    await raw.close()


async def test_a_dead_replicas_connections_are_released(capped: Server) -> None:
    """Runs last in this module: it kills the gateway replica (Serve starts another)."""
    token = capped.token("orphaned", sessions=["s-cap"])
    held = [(await Raw.open(capped.ws("/ws/notifications"), token))[0] for _ in range(CAP)]
    [replica] = [a for a in ray.util.list_named_actors(all_namespaces=True)
                 if "confide#Gateway" in a["name"]]
    ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)
    for raw in held:  # its connections drop without a goodbye to the hosts
        await raw.closed_with()

    async def cap_is_free_again() -> list[Raw]:
        while True:
            opened: list[Raw] = []
            try:
                for _ in range(CAP):
                    opened.append((await Raw.open(capped.ws("/ws/notifications"), token))[0])
                return opened
            except (ConnectionClosed, OSError, InvalidHandshake):  # 4429, or no replica yet
                await asyncio.gather(*(r.close() for r in opened))
                await asyncio.sleep(0.5)

    fresh = await asyncio.wait_for(cap_is_free_again(), 90)
    await asyncio.gather(*(r.close() for r in fresh))
