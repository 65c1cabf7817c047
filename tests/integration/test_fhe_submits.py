"""Contributions end to end: idempotent by (user, stream, id) across a host restart, the
bounded host queue answering `overloaded` (the SDK retries later), the per-user in-flight
cap, and key deletion reaching every host with no aggregate resurrected."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator

import httpx
import pytest
import ray

from actors.routing import host_index, host_name
from confide.client import AnalyticsClient
from fhe.client import KeySet, decrypt, encrypt, generate_keys
from tests.integration.conftest import Server, make_settings
from tests.integration.wsclient import Raw

#: Ciphertexts of the `test` preset are ~197 KB: the host queue holds four of them.
QUEUE_BYTES = 900_000


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return generate_keys("test")


@pytest.fixture(scope="module")
def srv(serve_port: int, tmp_path_factory: pytest.TempPathFactory,
        keys: KeySet) -> Iterator[Server]:
    settings = make_settings(
        tmp_path_factory.mktemp("fhe-submits"), fhe_worker_cpus=0.5, fhe_max_workers=1,
        fhe_flush_s=2.0, fhe_min_security="HEStd_NotSet", fhe_host_queue_bytes=QUEUE_BYTES,
        fhe_user_inflight=3,
    )
    server = Server(settings, serve_port)
    server.deploy()
    r = httpx.post(f"{server.http}/api/fhe/keys", json=keys.bundle.to_json(), timeout=120,
                   headers={"Authorization": f"Bearer {server.token('dr', 'therapist')}"})
    assert r.status_code == 201, r.text
    try:
        yield server
    finally:
        server.stop()


def ct(keys: KeySet, x: float) -> str:
    return base64.b64encode(encrypt(keys, [x]).data).decode()


async def aggregate(srv: Server, keys: KeySet, stream: str, count: int) -> float:
    owner, _ = await Raw.open(srv.ws("/ws/analytics"), srv.token("dr", "therapist"))
    await owner.send({"type": "subscribe", "stream": stream, "key_id": keys.key_id})
    agg = await owner.until(lambda f: f["type"] == "aggregate" and f["count"] >= count,
                            timeout=60)
    await owner.close()
    assert agg["count"] == count
    return float(decrypt(keys, base64.b64decode(agg["sum"]), 1)[0])


async def test_resubmitted_id_counted_once_across_a_host_restart(
    srv: Server, keys: KeySet
) -> None:
    stream = f"fhe:idem-{uuid.uuid4().hex[:6]}"
    raw, _ = await Raw.open(srv.ws("/ws/analytics"), srv.token("pat"))

    async def submit(sid: str, x: float) -> dict[str, object]:
        await raw.send({"type": "submit", "id": sid, "stream": stream,
                        "key_id": keys.key_id, "ciphertext": ct(keys, x)})
        return await raw.until(lambda f: f.get("id") == sid, timeout=60)

    assert await submit("one", 1.0) == {"type": "ack", "id": "one"}
    assert await submit("one", 1.0) == {"type": "ack", "id": "one"}  # acked again
    host = ray.get_actor(host_name(host_index(f"stream:{stream}", srv.settings.hosts)),
                         namespace=srv.settings.ray_namespace)
    ray.kill(host, no_restart=False)
    assert (await submit("one", 1.0))["type"] == "ack"  # the restarted host remembers
    assert (await submit("two", 2.0))["type"] == "ack"
    await raw.close()
    assert abs(await aggregate(srv, keys, stream, 2) - 3.0) < 1e-6


async def test_per_user_inflight_cap(srv: Server, keys: KeySet) -> None:
    stream = f"fhe:cap-{uuid.uuid4().hex[:6]}"
    raw, _ = await Raw.open(srv.ws("/ws/analytics"), srv.token("busy-user"))
    for i in range(5):  # all inside one flush window (2 s): none acked yet
        await raw.send({"type": "submit", "id": f"c{i}", "stream": stream,
                        "key_id": keys.key_id, "ciphertext": ct(keys, 1.0)})
    answers = await raw.collect(lambda f: f["type"] in ("ack", "error"), 5, timeout=60)
    by_id = {f["id"]: f for f in answers}
    assert [by_id[f"c{i}"]["type"] for i in range(5)] == ["ack"] * 3 + ["error"] * 2
    assert {by_id[f"c{i}"]["code"] for i in (3, 4)} == {"rate_limited"}
    await raw.send({"type": "submit", "id": "c5", "stream": stream, "key_id": keys.key_id,
                    "ciphertext": ct(keys, 1.0)})
    assert (await raw.until(lambda f: f.get("id") == "c5", timeout=60))["type"] == "ack"
    await raw.close()


async def test_full_host_queue_is_overloaded_and_the_sdk_retries(
    srv: Server, keys: KeySet
) -> None:
    stream = f"fhe:load-{uuid.uuid4().hex[:6]}"
    conns = [(await Raw.open(srv.ws("/ws/analytics"), srv.token(f"u{i}")))[0]
             for i in range(6)]
    for c in conns:  # six ciphertexts, room for four
        await c.send({"type": "submit", "id": "x", "stream": stream, "key_id": keys.key_id,
                      "ciphertext": ct(keys, 1.0)})
    answers = [await c.until(lambda f: f.get("id") == "x", timeout=60) for c in conns]
    refused = [a for a in answers if a["type"] == "error"]
    assert refused and {a["code"] for a in refused} == {"overloaded"}
    assert sum(a["type"] == "ack" for a in answers) >= 4
    async with AnalyticsClient(srv.ws("/ws/analytics"), srv.token("sdk-user")) as client:
        burst = [c.send({"type": "submit", "id": "y", "stream": stream,
                         "key_id": keys.key_id, "ciphertext": ct(keys, 1.0)}) for c in conns]
        await asyncio.gather(*burst)  # the queue is full again
        ack = await client.submit(stream, keys.key_id, ct(keys, 1.0), id="sdk", timeout=60)
        assert ack["id"] == "sdk"  # retried with backoff until there was room
    for c in conns:
        await c.close()


async def test_deleted_key_reaches_every_host_and_stays_deleted(srv: Server) -> None:
    mine = generate_keys("test")
    auth = {"Authorization": f"Bearer {srv.token('dr2', 'therapist')}"}
    async with httpx.AsyncClient(base_url=srv.http, timeout=120) as c:
        assert (await c.post("/api/fhe/keys", json=mine.bundle.to_json(),
                             headers=auth)).status_code == 201
    # spread over the hosts; three, the user's in-flight cap
    streams = [f"fhe:del-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    raw, _ = await Raw.open(srv.ws("/ws/analytics"), srv.token("pat2"))
    for i, stream in enumerate(streams):
        await raw.send({"type": "submit", "id": f"d{i}", "stream": stream,
                        "key_id": mine.key_id, "ciphertext": ct(mine, 1.0)})
    await raw.collect(lambda f: f["type"] == "ack", 3, timeout=60)
    for i, stream in enumerate(streams):  # in flight (flush window) when the key goes
        await raw.send({"type": "submit", "id": f"e{i}", "stream": stream,
                        "key_id": mine.key_id, "ciphertext": ct(mine, 1.0)})
    async with httpx.AsyncClient(base_url=srv.http, timeout=60) as c:
        assert (await c.delete(f"/api/fhe/keys/{mine.key_id}", headers=auth)).status_code == 204
    late = await raw.collect(lambda f: str(f.get("id", "")).startswith("e"), 3, timeout=60)
    assert {f["type"] for f in late} <= {"error", "ack"}
    for i, stream in enumerate(streams):
        await raw.send({"type": "submit", "id": f"f{i}", "stream": stream,
                        "key_id": mine.key_id, "ciphertext": ct(mine, 1.0)})
        fid = f"f{i}"
        err = await raw.until(lambda f, fid=fid: f.get("id") == fid, timeout=60)
        assert err["type"] == "error" and err["code"] == "not_found"
    await raw.close()
    from confide.store import open_store

    store = open_store(srv.settings.store_url())
    assert all(store.load_aggregate(s, mine.key_id) is None for s in streams)
    store.close()
