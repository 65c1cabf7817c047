"""A burst on one busy stream: its fold is split into concurrent partial sums that more
than one worker replica computes, and the sum is still exact."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import ray

from actors.routing import host_index, host_name
from fhe.client import KeySet, decrypt, encrypt, generate_keys
from tests.integration.conftest import Server, make_settings
from tests.integration.wsclient import Raw


@pytest.fixture(scope="module")
def srv(serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # two workers from the start; each takes 2 x 2 ongoing requests, so eight concurrent
    # partial sums cannot all go to one replica
    settings = make_settings(
        tmp_path_factory.mktemp("fhe-tree"), fhe_worker_cpus=0.25, fhe_min_workers=2,
        fhe_max_workers=2, fhe_max_batch=2, fhe_flush_s=1.0, fhe_shard_size=8,
        fhe_min_security="HEStd_NotSet",
    )
    server = Server(settings, serve_port)
    server.deploy()
    try:
        yield server
    finally:
        server.stop()


async def test_busy_stream_uses_more_than_one_worker(srv: Server) -> None:
    keys: KeySet = generate_keys("test")
    async with httpx.AsyncClient(base_url=srv.http, timeout=120) as c:
        r = await c.post("/api/fhe/keys", json=keys.bundle.to_json(),
                         headers={"Authorization": f"Bearer {srv.token('dr', 'therapist')}"})
        assert r.status_code == 201
    stream = f"fhe:busy-{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(11)
    vectors = rng.uniform(-1, 1, size=(64, 4))
    cts = [base64.b64encode(encrypt(keys, list(v)).data).decode() for v in vectors]
    conns = [(await Raw.open(srv.ws("/ws/analytics"), srv.token(f"p{i}")))[0]
             for i in range(8)]
    for i, ct in enumerate(cts):  # all inside one flush window: one batch of 64
        await conns[i % 8].send({"type": "submit", "id": f"b{i}", "stream": stream,
                                 "key_id": keys.key_id, "ciphertext": ct})
    answers = await asyncio.gather(*(
        c.collect(lambda f: f["type"] in ("ack", "error"), 8, timeout=120) for c in conns))
    assert all(f["type"] == "ack" for batch in answers for f in batch)
    host = ray.get_actor(host_name(host_index(f"stream:{stream}", srv.settings.hosts)),
                         namespace=srv.settings.ray_namespace)
    stats = await host.stats.remote()
    assert stats["fhe_tree_workers"] >= 2
    owner, _ = await Raw.open(srv.ws("/ws/analytics"), srv.token("dr", "therapist"))
    await owner.send({"type": "subscribe", "stream": stream, "key_id": keys.key_id})
    agg = await owner.until(lambda f: f["type"] == "aggregate", timeout=60)
    assert agg["count"] == 64
    got = decrypt(keys, base64.b64decode(agg["sum"]), 4)
    assert np.max(np.abs(got - vectors.sum(axis=0))) < 1e-6
    for c in [owner, *conns]:
        await c.close()
