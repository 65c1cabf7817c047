"""Per-user connection counting (PROTOCOL 1.1, "Connections per user")."""

from __future__ import annotations

from confide.conncount import ConnectionCounts


def test_cap_per_user_and_release() -> None:
    c = ConnectionCounts()
    assert all(c.acquire("alice", f"r1:{i}", 3) for i in range(3))
    assert not c.acquire("alice", "r1:x", 3)
    assert c.acquire("bob", "r1:b", 3)  # others are not affected
    c.release("alice", "r1:1")
    assert c.acquire("alice", "r2:y", 3)
    assert c.count("alice") == 3


def test_retried_acquire_counts_once_and_releases_are_idempotent() -> None:
    c = ConnectionCounts()
    assert c.acquire("alice", "r1:a", 2) and c.acquire("alice", "r1:a", 2)
    assert c.count("alice") == 1
    c.release("alice", "r1:a")
    c.release("alice", "r1:a")
    c.release("nobody", "r1:z")
    assert c.count("alice") == 0 and c.users == 0


def test_dead_replica_connections_are_dropped() -> None:
    c = ConnectionCounts()
    for i in range(2):
        c.acquire("alice", f"dead:{i}", 4)
        c.acquire("alice", f"live:{i}", 4)
    c.acquire("bob", "dead:b", 4)
    assert c.drop_prefix("dead:") == 3
    assert c.count("alice") == 2 and c.count("bob") == 0 and c.users == 1
    assert c.acquire("alice", "live:2", 4) and c.acquire("alice", "live:3", 4)
    assert not c.acquire("alice", "live:4", 4)
