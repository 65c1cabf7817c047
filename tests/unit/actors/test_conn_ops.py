"""The host's per-user connection count: cap, release, and reaping of dead replicas."""

from __future__ import annotations

from actors.host import Host

from .support import Clock


async def test_cap_and_release(host: Host) -> None:
    assert all([await host.conn_acquire("alice", f"gw1:{i}", 2) for i in range(2)])
    assert not await host.conn_acquire("alice", "gw1:x", 2)
    await host.conn_release("alice", "gw1:0")
    assert await host.conn_acquire("alice", "gw2:y", 2)


async def test_a_dead_replicas_connections_are_released_by_reaping(
    host: Host, clock: Clock
) -> None:
    inc = host.incarnation
    for gw in ("gw1", "gw2"):
        await host.poll(gw, inc, host.log.head, 0.0)
        assert await host.conn_acquire("alice", f"{gw}:c", 2)
    assert not await host.conn_acquire("alice", "gw2:d", 2)
    clock.advance(60)
    await host.poll("gw2", inc, host.log.head, 0.0)  # gw1 died: it stopped polling
    host.reap(clock.monotonic() + 40)
    assert host.connections.count("alice") == 1
    assert await host.conn_acquire("alice", "gw2:d", 2)
