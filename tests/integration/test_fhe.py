"""Encrypted computation end to end: real OpenFHE clients, REST key registry, FHE workers,
`fhe:` analytics streams and chat insights."""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from ray import serve

from fhe.client import KeySet, decrypt, encrypt, generate_keys
from fhe.models import MOOD_RISK_V1
from tests.integration.conftest import Server, make_settings
from tests.integration.wsclient import Raw


@pytest.fixture(scope="module")
def fhe_server(serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = make_settings(
        tmp_path_factory.mktemp("fhe"), fhe_worker_cpus=0.5, fhe_max_workers=3,
        fhe_max_batch=2, fhe_batch_wait_s=0.005, fhe_upscale_delay_s=0.5,
        fhe_downscale_delay_s=3.0, fhe_flush_s=0.05, fhe_min_security="HEStd_NotSet",
        fhe_shard_size=8,
    )
    srv = Server(settings, serve_port)
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return generate_keys("test")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def upload(server: Server, owner: str, keys: KeySet, role: str = "therapist",
                 body: dict[str, Any] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http, timeout=60) as c:
        return await c.post("/api/fhe/keys", json=body or keys.bundle.to_json(),
                            headers={"Authorization": f"Bearer {server.token(owner, role)}"})


async def test_key_registry(fhe_server: Server, keys: KeySet) -> None:
    r = await upload(fhe_server, "dr-keys", keys)
    assert r.status_code == 201 and r.json() == {"key_id": keys.key_id}
    again = await upload(fhe_server, "dr-keys", keys)  # same owner: idempotent
    assert again.status_code == 201 and again.json() == r.json()
    assert (await upload(fhe_server, "someone-else", keys)).status_code == 409
    auth = {"Authorization": f"Bearer {fhe_server.token('anyone')}"}
    async with httpx.AsyncClient(base_url=fhe_server.http, timeout=30) as c:
        info = (await c.get(f"/api/fhe/keys/{keys.key_id}", headers=auth)).json()
        assert info["owner"] == "dr-keys" and info["scheme"] == "CKKS"
        assert info["ring_dim"] == 4096 and info["slots"] == 64 and info["depth"] == 2
        assert (await c.get("/api/fhe/keys/nope", headers=auth)).status_code == 404
        assert (await c.delete(f"/api/fhe/keys/{keys.key_id}", headers=auth)).status_code == 403


async def test_secret_key_upload_refused_and_never_stored(fhe_server: Server) -> None:
    mine = generate_keys("test")
    body = mine.bundle.to_json()
    body["eval_mult_key"] = b64(mine.require_secret().data)
    r = await upload(fhe_server, "careless", mine, body=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_message"
    assert "secret" in r.json()["error"]["message"]
    auth = {"Authorization": f"Bearer {fhe_server.token('careless')}"}
    async with httpx.AsyncClient(base_url=fhe_server.http, timeout=30) as c:
        assert (await c.get(f"/api/fhe/keys/{mine.key_id}", headers=auth)).status_code == 404
    garbage = await upload(fhe_server, "careless", mine, body={"context": "!!"})
    assert garbage.status_code == 400


async def test_hundred_contributions_sum_exactly(fhe_server: Server, keys: KeySet) -> None:
    await upload(fhe_server, "dr-keys", keys)
    stream = f"fhe:mood-{uuid.uuid4().hex[:6]}"
    owner = (await Raw.open(fhe_server.ws("/ws/analytics"),
                            fhe_server.token("dr-keys", "therapist")))[0]
    await owner.send({"type": "subscribe", "stream": stream, "key_id": keys.key_id})
    await owner.until(lambda f: f["type"] == "subscribed")
    rng = random.Random(7)
    vectors = [[rng.uniform(-10, 10) for _ in range(64)] for _ in range(100)]
    cts = [b64(encrypt(keys, v).data) for v in vectors]
    conns = [(await Raw.open(fhe_server.ws("/ws/analytics"), fhe_server.token(f"c{i}")))[0]
             for i in range(10)]
    for i, ct in enumerate(cts):
        await conns[i % 10].send({"type": "submit", "id": f"s{i}", "stream": stream,
                                  "key_id": keys.key_id, "ciphertext": ct})
    acks = await asyncio.gather(*(
        c.collect(lambda f: f["type"] in ("ack", "error"), 10, timeout=120) for c in conns
    ))
    assert all(f["type"] == "ack" for batch in acks for f in batch)
    agg = await owner.until(lambda f: f["type"] == "aggregate" and f["count"] == 100,
                            timeout=60)
    assert agg["stream"] == stream and agg["key_id"] == keys.key_id
    expected = np.sum(np.array(vectors), axis=0)
    got = decrypt(keys, base64.b64decode(agg["sum"]), 64)
    assert np.max(np.abs(got - expected)) <= 1e-6 * np.max(np.abs(expected))
    mean = decrypt(keys, base64.b64decode(agg["mean"]), 64)
    assert np.max(np.abs(mean - expected / 100)) <= 1e-4
    # only the key's owner may watch; unknown keys are not found
    other = conns[0]
    await other.send({"type": "subscribe", "stream": stream, "key_id": keys.key_id})
    assert (await other.until(lambda f: f["type"] == "error"))["code"] == "forbidden"
    await other.send({"type": "submit", "id": "late", "stream": stream,
                      "key_id": keys.key_id, "ciphertext": cts[0]})
    assert (await other.until(lambda f: f["type"] in ("ack", "error")))["type"] == "ack"
    await owner.until(lambda f: f["type"] == "aggregate" and f["count"] == 101, timeout=60)
    await other.send({"type": "ping", "id": "sync"})
    await other.until(lambda f: f["type"] == "pong")
    assert not any(f["type"] == "aggregate" for f in other.seen)  # refused means refused
    await other.send({"type": "submit", "id": "x", "stream": stream, "key_id": "nope",
                      "ciphertext": cts[0]})
    assert (await other.until(lambda f: f["type"] == "error"))["code"] == "not_found"
    for c in [owner, *conns]:
        await c.close()


async def test_bad_ciphertexts_refused_and_worker_stays_healthy(
    fhe_server: Server, keys: KeySet
) -> None:
    await upload(fhe_server, "dr-keys", keys)
    stream = f"fhe:bad-{uuid.uuid4().hex[:6]}"
    raw, _ = await Raw.open(fhe_server.ws("/ws/analytics"), fhe_server.token("mallory"))
    good = encrypt(keys, [1.0, 2.0]).data
    foreign = encrypt(generate_keys("test"), [1.0, 2.0]).data
    cases = {
        "garbage": b64(b"\x00" * 4096),
        "truncated": b64(good[: len(good) // 2]),
        "foreign": b64(foreign),
        "not-base64": "%%%",
    }
    for name, ct in cases.items():
        await raw.send({"type": "submit", "id": name, "stream": stream, "key_id": keys.key_id,
                        "ciphertext": ct})
        err = await raw.until(lambda f: f["type"] in ("error", "ack"), timeout=60)
        assert err["type"] == "error" and err["code"] == "invalid_message", (name, err)
        assert err["id"] == name
    await raw.send({"type": "submit", "id": "ok", "stream": stream, "key_id": keys.key_id,
                    "ciphertext": b64(good)})
    assert await raw.until(lambda f: f["type"] in ("error", "ack"), timeout=60) == {
        "type": "ack", "id": "ok"}
    await raw.close()


async def test_chat_insight_scores_encrypted_features(fhe_server: Server, keys: KeySet) -> None:
    await upload(fhe_server, "dr-keys", keys)
    s = f"s-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=fhe_server.http, timeout=30) as c:
        client_tok = fhe_server.token("pat", sessions=[s])
        r = await c.put(f"/api/sessions/{s}/fhe", json={"key_id": keys.key_id},
                        headers={"Authorization": f"Bearer {client_tok}"})
        assert r.status_code == 403
        ther = fhe_server.token("dr-keys", "therapist", sessions=[s])
        r = await c.put(f"/api/sessions/{s}/fhe",
                        json={"key_id": keys.key_id, "model": "mood-risk-v1"},
                        headers={"Authorization": f"Bearer {ther}"})
        assert r.status_code == 200, r.text
    dr, _ = await Raw.open(fhe_server.ws(f"/ws/chat/{s}"), ther)
    pat, _ = await Raw.open(fhe_server.ws(f"/ws/chat/{s}"), client_tok)
    answers = {f: random.Random(3).random() for f in MOOD_RISK_V1.features}
    ct = encrypt(keys, MOOD_RISK_V1.vector(answers)).data
    await pat.send({"type": "message", "id": "checkin", "body": {
        "text": "weekly check-in", "features": {"key_id": keys.key_id, "ciphertext": b64(ct)}}})
    ack = await pat.until(lambda f: f["type"] == "ack", timeout=60)
    insight = await dr.until(lambda f: f["type"] == "insight", timeout=60)
    assert insight["for_offset"] == ack["offset"] and insight["model"] == "mood-risk-v1"
    score = decrypt(keys, base64.b64decode(insight["ciphertext"]), 1)[0]
    assert abs(score - MOOD_RISK_V1.plain_score(answers)) <= 1e-4
    # features under another key are refused; the client never sees insights
    await pat.send({"type": "message", "id": "bad", "body": {
        "features": {"key_id": "other", "ciphertext": b64(ct)}}})
    assert (await pat.until(lambda f: f["type"] == "error"))["code"] == "invalid_message"
    assert not any(f["type"] == "insight" for f in pat.seen)
    await asyncio.gather(dr.close(), pat.close())


def running_workers() -> int:
    app = serve.status().applications["confide"]
    return int(app.deployments["FheWorker"].replica_states.get("RUNNING", 0))


async def wait_for(pred: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.25)


async def test_workers_scale_up_under_burst_and_back_down(
    fhe_server: Server, keys: KeySet
) -> None:
    from actors.fhe_client import FheWorkers
    from actors.fhe_compute import FoldRequest

    await upload(fhe_server, "dr-keys", keys)
    # at rest first: an earlier test's load may still hold a second worker up
    await wait_for(lambda: running_workers() == 1, timeout=60)
    workers = FheWorkers.of_app("confide")
    cts = tuple(encrypt(keys, [float(i)]).data for i in range(4))
    stop = time.monotonic() + 60

    async def burst() -> None:
        while running_workers() < 2 and time.monotonic() < stop:
            await asyncio.gather(*(
                workers.fold(FoldRequest(keys.key_id, None, cts)) for _ in range(24)
            ))

    await burst()
    assert running_workers() >= 2
    await wait_for(lambda: running_workers() == 1, timeout=60)


async def test_worker_killed_mid_batch_costs_no_request(fhe_server: Server, keys: KeySet) -> None:
    import ray

    from actors.fhe_client import FheWorkers
    from actors.fhe_compute import FoldRequest

    await upload(fhe_server, "dr-keys", keys)
    workers = FheWorkers.of_app("confide")
    cts = tuple(encrypt(keys, [float(i)]).data for i in range(3))
    expected = sum(range(3))
    calls = [
        asyncio.create_task(workers.fold(FoldRequest(keys.key_id, None, cts)))
        for _ in range(12)
    ]
    await asyncio.sleep(0)  # the requests are on their way before the kill
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if "FheWorker" in a["name"]]
    assert replicas
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]),
             no_restart=True)
    results = await asyncio.wait_for(asyncio.gather(*calls), timeout=120)
    for r in results:
        assert r.refused == (None, None, None)
        assert abs(decrypt(keys, r.total, 1)[0] - expected) < 1e-6
