"""Failure drills on a local three-node cluster (`make cluster-up`'s cluster/local.py),
each with chat clients and notification inboxes busy throughout (tests/integration/drills.py):
after each, no acknowledged message or accepted notification is lost, no client shows a
duplicate and every client has resumed within 10 s. The figures are printed (`-s`) and
appended to $CONFIDE_DRILL_REPORT when set.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.routing import host_index
from gateway.serve_mode import replica_ports
from tests.integration.drills import LocalCluster, drill, store_supports_postgres

pytestmark = pytest.mark.drill
HOSTS = 3  # CONFIDE_HOSTS in cluster/serve.yaml


def quiet_port() -> int:
    """A free port outside the ephemeral range, whose replica port block is free too.

    Other Confides on this machine (test sessions) take ephemeral ports; during a full
    restart, one of them could take ours and answer our clients (seen here: a foreign
    welcome with another epoch). Ports below 30000 are never handed out by bind(0)."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 29999)
        low, high = replica_ports(port)
        if all(_free(p) for p in [port, *range(low, high + 1)]):
            return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # Its data dir is reachable by PostgreSQL's own user under root (pytest's are 0700).
    root = Path(tempfile.mkdtemp(prefix="confide-cluster-"))
    root.chmod(0o755)
    # a secret of its own: no other Confide on this machine accepts these clients' tokens
    c = LocalCluster(root, quiet_port(), secrets.token_hex(24))
    try:
        c.run("up")
        yield c
    finally:
        try:
            c.run("down", timeout=300)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def entity_on(cluster: LocalCluster, prefix: str, node: str | None = None,
              count: int = 1) -> tuple[list[str], str]:
    """`count` ids whose host is one host on `node` (on any node when None)."""
    hosts = cluster.where()["hosts"]
    names = [h for h, n in sorted(hosts.items()) if node is None or n == node]
    assert names, f"no host actor on {node}: {hosts}"
    target = int(names[0].rsplit("-", 1)[1])
    found: list[str] = []
    while len(found) < count:
        candidate = f"{prefix}{uuid.uuid4().hex[:8]}"
        kind = "chat:" if prefix.startswith("s-") else "inbox:"
        if host_index(kind + candidate, HOSTS) == target:
            found.append(candidate)
    return found, names[0]


async def test_host_actor_killed(cluster: LocalCluster) -> None:
    [session], host = entity_on(cluster, "s-")
    users, _ = entity_on(cluster, "u-", cluster.where()["hosts"][host], count=2)
    index = host.rsplit("-", 1)[1]

    async def disrupt() -> None:
        await asyncio.to_thread(cluster.run, "kill-host", index)

    figures = await drill(cluster, "host actor killed", session, users, disrupt)
    assert figures["messages"] > 0 and figures["notifications"] > 0
    assert host in cluster.where()["hosts"]  # restarted


async def test_gateway_replica_killed(cluster: LocalCluster) -> None:
    """One of the two gateway replicas dies: its clients reconnect through HAProxy to the
    other (or the replacement) and resume."""
    [session], _ = entity_on(cluster, "s-")
    users, _ = entity_on(cluster, "u-", count=2)

    async def disrupt() -> None:
        await asyncio.to_thread(cluster.run, "kill-replica", "Gateway")

    figures = await drill(cluster, "gateway replica killed", session, users, disrupt)
    assert figures["messages"] > 0 and figures["notifications"] > 0


async def test_rolling_redeploy(cluster: LocalCluster) -> None:
    """`serve deploy` of a changed config replaces every replica while clients chat."""
    [session], _ = entity_on(cluster, "s-")
    users, _ = entity_on(cluster, "u-", count=2)
    before = set(cluster.where()["replicas"])

    async def disrupt() -> float:
        await asyncio.to_thread(cluster.run, "deploy", uuid.uuid4().hex[:8])
        # old gateway replicas keep their WebSockets while they drain, then are stopped:
        # resume times count from when the last old replica is gone
        deadline = time.monotonic() + 300
        while before & set((await asyncio.to_thread(cluster.where))["replicas"]):
            assert time.monotonic() < deadline, "old replicas still running"
            await asyncio.sleep(1.0)
        return time.time()

    figures = await drill(cluster, "rolling redeploy", session, users, disrupt)
    assert figures["messages"] > 0 and figures["notifications"] > 0
    assert not before & set(cluster.where()["replicas"])  # every replica was replaced
    assert figures["reconnects"] > 0  # the old replicas' clients moved to new ones


async def test_postgres_restarted(cluster: LocalCluster) -> None:
    """PostgreSQL stops and starts again under load: the store's pool reconnects."""
    if not store_supports_postgres():
        pytest.skip("this branch has no PostgreSQL store (cluster runs on SQLite)")
    [session], _ = entity_on(cluster, "s-")
    users, _ = entity_on(cluster, "u-", count=2)

    async def disrupt() -> None:
        await asyncio.to_thread(cluster.run, "restart-postgres")

    figures = await drill(cluster, "PostgreSQL restarted", session, users, disrupt)
    assert figures["messages"] > 0 and figures["notifications"] > 0


async def test_worker_node_killed(cluster: LocalCluster) -> None:
    """A worker node dies (SIGKILL of its raylet and every process on it) mid-chat: its
    host actor comes back on a live node and reloads its entities from the store."""
    placed = set(cluster.where()["hosts"].values())
    node = "worker-1" if "worker-1" in placed else "worker-2"
    [session], host = entity_on(cluster, "s-", node)
    users, _ = entity_on(cluster, "u-", node, count=2)

    async def disrupt() -> float:
        await asyncio.to_thread(cluster.run, "kill-node", node[-1])
        return time.time()  # resume counts from the node's death, not the command's start

    figures = await drill(cluster, f"worker node killed ({node})", session, users, disrupt)
    assert figures["messages"] > 0 and figures["notifications"] > 0
    where = cluster.where()
    assert node not in where["nodes"]
    assert where["hosts"][host] in set(where["nodes"]) - {node}
    assert len(where["hosts"]) == HOSTS


async def test_full_cluster_restart(cluster: LocalCluster) -> None:
    """Everything stops (`make cluster-down`) and starts again on the same data; clients
    keep retrying, then resume where they were. Resume times count from when /healthz is
    ready again (`resume_counted_from_s` is the outage)."""
    [session], _ = entity_on(cluster, "s-")
    users, _ = entity_on(cluster, "u-", count=2)

    async def disrupt() -> float:
        await asyncio.to_thread(cluster.run, "down")
        await asyncio.to_thread(cluster.run, "up")
        return time.time()

    figures = await drill(cluster, "full cluster restart", session, users, disrupt)
    assert figures["messages"] > 0 and figures["notifications"] > 0
    assert len(cluster.where()["nodes"]) == 3


async def test_fhe_flow_on_the_cluster(cluster: LocalCluster) -> None:
    """The FHE flow of `make run` works on the cluster too (its workers on the node with
    the GPU resource): OpenFHE's default-parameter client registers a key, patients fetch
    it from the server and contribute, the therapist decrypts the right sum and mean."""
    from fhe.client import keys_from_context
    from tests.integration.test_fhe_clients import (
        check_sum_and_mean,
        contribute_and_watch,
        register,
    )
    from tests.unit.fhe.test_techniques import openfhe_context

    keys = keys_from_context(openfhe_context(None, secure=True))
    await register(cluster, "dr-cluster", keys)  # type: ignore[arg-type]
    rng = random.Random(7)
    vectors = [[rng.uniform(-5, 5) for _ in range(8)] for _ in range(4)]
    agg = await contribute_and_watch(cluster, "dr-cluster", keys, vectors)  # type: ignore[arg-type]
    check_sum_and_mean(keys, agg, vectors)
