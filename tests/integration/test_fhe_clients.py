"""Any OpenFHE CKKS client end to end (OpenFHE's default parameters, other scaling
techniques), the public-key endpoint, and the SDK helpers built on it."""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from confide.client import fhe as sdk
from fhe.client import KeySet, decrypt, generate_keys, keys_from_context
from fhe.models import MOOD_RISK_V1
from tests.integration.conftest import Server, make_settings
from tests.integration.wsclient import Raw
from tests.unit.fhe.test_techniques import openfhe_context


@pytest.fixture(scope="module")
def fhe_server(serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = make_settings(
        tmp_path_factory.mktemp("fhe-clients"), fhe_worker_cpus=0.5, fhe_max_workers=1,
        fhe_flush_s=0.05, fhe_min_security="HEStd_NotSet",
    )
    srv = Server(settings, serve_port)
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()


def auth(server: Server, user: str, role: str = "client", **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, role, **kw)}"}


async def register(server: Server, owner: str, keys: KeySet) -> None:
    async with httpx.AsyncClient(base_url=server.http, timeout=120) as c:
        r = await c.post("/api/fhe/keys", json=keys.bundle.to_json(),
                         headers=auth(server, owner, "therapist"))
    assert r.status_code == 201, r.text


async def contribute_and_watch(server: Server, owner: str, keys: KeySet,
                               vectors: list[list[float]]) -> dict[str, Any]:
    """Contributors fetch the key from the server, encrypt and submit; the owner
    gets the aggregate of all of them."""
    stream = f"fhe:any-{uuid.uuid4().hex[:6]}"
    watcher, _ = await Raw.open(server.ws("/ws/analytics"), server.token(owner, "therapist"))
    await watcher.send({"type": "subscribe", "stream": stream, "key_id": keys.key_id})
    await watcher.until(lambda f: f["type"] == "subscribed")
    key = await asyncio.to_thread(sdk.fetch_public_key, server.http,
                                  server.token("patient"), keys.key_id)
    contributor, _ = await Raw.open(server.ws("/ws/analytics"), server.token("patient"))
    for i, v in enumerate(vectors):
        ct = await asyncio.to_thread(sdk.encrypt_b64, key, v)
        await contributor.send({"type": "submit", "id": f"c{i}", "stream": stream,
                                "key_id": keys.key_id, "ciphertext": ct})
    acks = await contributor.collect(lambda f: f["type"] in ("ack", "error"), len(vectors),
                                     timeout=120)
    assert all(f["type"] == "ack" for f in acks), acks
    agg = await watcher.until(
        lambda f: f["type"] == "aggregate" and f["count"] == len(vectors), timeout=120)
    await asyncio.gather(watcher.close(), contributor.close())
    return agg


def check_sum_and_mean(keys: KeySet, agg: dict[str, Any], vectors: list[list[float]]) -> None:
    n = len(vectors[0])
    expected = np.sum(np.array(vectors), axis=0)
    got = decrypt(keys, base64.b64decode(agg["sum"]), n)
    assert np.max(np.abs(got - expected)) < 1e-5
    mean = decrypt(keys, base64.b64decode(agg["mean"]), n)
    assert np.max(np.abs(mean - expected / len(vectors))) < 1e-5


async def test_openfhe_default_parameters_client(fhe_server: Server) -> None:
    """OpenFHE's simple-real-numbers example as a new user writes it (depth 1, scale 50,
    batch 8, everything else OpenFHE's default: FLEXIBLEAUTOEXT, 128-bit, N = 2^14)."""
    keys = keys_from_context(openfhe_context(None, secure=True))
    await register(fhe_server, "dr-default", keys)
    rng = random.Random(1)
    vectors = [[rng.uniform(-5, 5) for _ in range(8)] for _ in range(5)]
    check_sum_and_mean(keys, await contribute_and_watch(fhe_server, "dr-default", keys,
                                                         vectors), vectors)


@pytest.mark.parametrize("technique", ["FIXEDAUTO", "FLEXIBLEAUTO"])
async def test_other_scaling_techniques(fhe_server: Server, technique: str) -> None:
    keys = keys_from_context(openfhe_context(technique))
    await register(fhe_server, f"dr-{technique}", keys)
    rng = random.Random(2)
    vectors = [[rng.uniform(-5, 5) for _ in range(8)] for _ in range(4)]
    check_sum_and_mean(keys, await contribute_and_watch(fhe_server, f"dr-{technique}", keys,
                                                        vectors), vectors)


async def test_public_key_endpoint(fhe_server: Server) -> None:
    keys = generate_keys("test")
    await register(fhe_server, "dr-public", keys)
    async with httpx.AsyncClient(base_url=fhe_server.http, timeout=60) as c:
        url = f"/api/fhe/keys/{keys.key_id}/public"
        assert (await c.get(url)).status_code == 401
        assert (await c.get("/api/fhe/keys/nope/public",
                            headers=auth(fhe_server, "anyone"))).status_code == 404
        r = await c.get(url, headers=auth(fhe_server, "anyone"))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"key_id", "owner", "context", "public_key"}
    assert (body["key_id"], body["owner"]) == (keys.key_id, "dr-public")
    assert base64.b64decode(body["public_key"]) == keys.bundle.public_key.data
    assert base64.b64decode(body["context"]) == keys.bundle.context.data


async def test_sdk_session_config_and_features_for_a_fetched_key(fhe_server: Server) -> None:
    keys = generate_keys("test")
    await register(fhe_server, "dr-sdk", keys)
    s = f"s-{uuid.uuid4().hex[:6]}"
    ther = fhe_server.token("dr-sdk", "therapist", sessions=[s])
    pat = fhe_server.token("pat-sdk", sessions=[s])
    with pytest.raises(sdk.FheHttpError) as refused:
        await asyncio.to_thread(sdk.configure_session, fhe_server.http, pat, s, keys.key_id)
    assert refused.value.status == 403
    result = await asyncio.to_thread(sdk.configure_session, fhe_server.http, ther, s,
                                     keys.key_id)
    assert result["fhe"]["key_id"] == keys.key_id
    key = await asyncio.to_thread(sdk.fetch_public_key, fhe_server.http, pat, keys.key_id)
    answers = {f: random.Random(5).random() for f in MOOD_RISK_V1.features}
    features = await asyncio.to_thread(sdk.encrypt_features, key, answers)
    dr, _ = await Raw.open(fhe_server.ws(f"/ws/chat/{s}"), ther)
    patient, _ = await Raw.open(fhe_server.ws(f"/ws/chat/{s}"), pat)
    await patient.send({"type": "message", "id": "m1",
                        "body": {"text": "check-in", "features": features}})
    await patient.until(lambda f: f["type"] == "ack", timeout=60)
    insight = await dr.until(lambda f: f["type"] == "insight", timeout=60)
    score = sdk.decrypt_insight(keys, insight)
    assert abs(score - MOOD_RISK_V1.plain_score(answers)) <= 1e-4
    await asyncio.gather(dr.close(), patient.close())


async def test_models_validated_when_configured(fhe_server: Server) -> None:
    keys = generate_keys("test")  # 64 slots
    await register(fhe_server, "dr-models", keys)
    s = f"s-{uuid.uuid4().hex[:6]}"
    headers = auth(fhe_server, "dr-models", "therapist", sessions=[s]) | {
        "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=fhe_server.http, timeout=60) as c:
        wide = {"key_id": keys.key_id, "model": {"name": "wide", "weights": [0.1] * 65}}
        r = await c.put(f"/api/sessions/{s}/fhe", json=wide, headers=headers)
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "model: 65 weights but the key has 64 slots"
        nan = '{"key_id": "' + keys.key_id + '", "model": {"name": "n", "weights": [NaN]}}'
        r = await c.put(f"/api/sessions/{s}/fhe", content=nan, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_message"
        ok = {"key_id": keys.key_id, "model": {"name": "ok", "weights": [0.5, 0.25]}}
        assert (await c.put(f"/api/sessions/{s}/fhe", json=ok, headers=headers)).status_code == 200


async def test_crafted_bundles_get_400_and_harm_nobody(fhe_server: Server) -> None:
    """Validated in a separate process (fhe/validator.py): bit flips, truncations and
    huge length fields are refused with 400; the workers keep serving everyone else."""
    keys = generate_keys("test")
    good = keys.bundle.to_json()
    blobs = keys.bundle.blobs()

    def with_field(name: str, data: bytes) -> dict[str, str]:
        return good | {name: base64.b64encode(data).decode()}

    flipped = bytearray(blobs["context"])
    flipped[len(flipped) // 2] ^= 0x10
    huge = bytearray(blobs["public_key"])
    huge[40:48] = (1 << 62).to_bytes(8, "little")
    crafted = [with_field("context", bytes(flipped)),
               with_field("eval_mult_key", blobs["eval_mult_key"][:1000]),
               with_field("public_key", bytes(huge)),
               with_field("rotation_keys", blobs["rotation_keys"][:-7])]
    async with httpx.AsyncClient(base_url=fhe_server.http, timeout=120) as c:
        headers = auth(fhe_server, "mallory", "therapist")
        answers = await asyncio.gather(*(c.post("/api/fhe/keys", json=body, headers=headers)
                                         for body in crafted))
        for r in answers:
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_message"
        ok = await c.post("/api/fhe/keys", json=good, headers=auth(fhe_server, "dr-ok",
                                                                   "therapist"))
        assert ok.status_code == 201
    vectors = [[1.0, 2.0], [3.0, 4.0]]
    agg = await contribute_and_watch(fhe_server, "dr-ok", keys, vectors)
    assert np.allclose(decrypt(keys, base64.b64decode(agg["sum"]), 2), [4.0, 6.0], atol=1e-6)
