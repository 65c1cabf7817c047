"""`confide fhe session-config` and `confide fhe features` against a scripted server:
the public key fetched from the server (checked against its key_id), the session set-up."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from confide.client import fhe as sdk
from confide.client.cli import main
from fhe.client import KeySet, decrypt, generate_keys
from fhe.models import MOOD_RISK_V1
from tests.unit.client.conftest import json_api

TOKEN = "therapist-token-0123456789"
RECEIVED: list[tuple[str, dict[str, str], bytes]] = []


@pytest.fixture(autouse=True)
def _one_openfhe_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return generate_keys("test")


@pytest.fixture(scope="module")
def other() -> KeySet:
    return generate_keys("test")


@pytest.fixture()
def api(keys: KeySet, other: KeySet) -> Iterator[str]:
    def answer(path: str, _: dict[str, str], raw: bytes) -> tuple[int, Any]:
        public = {"owner": "dr", "context": keys.bundle.context.b64(),
                  "public_key": keys.bundle.public_key.b64()}
        if path == f"/api/fhe/keys/{keys.key_id}/public":
            return 200, public | {"key_id": keys.key_id}
        if path == f"/api/fhe/keys/{other.key_id}/public":  # a server lying about the key
            return 200, public | {"key_id": other.key_id}
        if path.startswith("/api/sessions/s1/fhe"):
            return 200, {"session_id": "s1", "fhe": json.loads(raw)}
        return 404, {"error": {"code": "not_found", "message": "no such key"}}

    RECEIVED.clear()
    with json_api(answer, RECEIVED) as url:
        yield url


def test_features_encrypts_for_the_fetched_key(
    api: str, keys: KeySet, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fhe", "features", "--key-id", keys.key_id, "--url", api, "--token", TOKEN,
            "low_mood=0.5", "self_harm_thoughts=1"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    field = json.loads(out)
    assert field["key_id"] == keys.key_id and TOKEN not in out + err
    values = decrypt(keys, base64.b64decode(field["ciphertext"]), 8)
    expected = MOOD_RISK_V1.vector({"low_mood": 0.5, "self_harm_thoughts": 1.0})
    assert max(abs(a - b) for a, b in zip(values, expected, strict=True)) < 1e-6
    [(path, headers, _)] = RECEIVED
    assert path == f"/api/fhe/keys/{keys.key_id}/public"
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_features_refuses_a_swapped_key_and_bad_values(
    api: str, other: KeySet, keys: KeySet, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["fhe", "features", "--url", api, "--token", TOKEN]
    assert main([*base, "--key-id", other.key_id, "low_mood=1"]) == 1
    assert "sha256 is not the key_id" in capsys.readouterr().err
    assert main([*base, "--key-id", keys.key_id, "low_mood=lots"]) == 1
    assert "NAME=NUMBER" in capsys.readouterr().err
    assert main([*base, "--key-id", keys.key_id, "shoe_size=1"]) == 1
    assert "no feature" in capsys.readouterr().err
    assert main([*base, "--key-id", "unknown", "low_mood=1"]) == 1
    assert "404" in capsys.readouterr().err


def test_session_config_puts_key_and_model(
    api: str, keys: KeySet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fhe", "session-config", "s1", "--key-id", keys.key_id, "--url", api,
            "--token", TOKEN]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["fhe"] == {
        "key_id": keys.key_id, "model": "mood-risk-v1"}
    [(path, _, raw)] = RECEIVED
    assert path == "/api/sessions/s1/fhe"
    assert json.loads(raw) == {"key_id": keys.key_id, "model": "mood-risk-v1"}
    assert main(["fhe", "session-config", "s1", "--url", api, "--token", TOKEN]) == 1
    assert "--key-id or --dir" in capsys.readouterr().err


def test_fetch_public_key_sdk(api: str, keys: KeySet) -> None:
    key = sdk.fetch_public_key(api, TOKEN, keys.key_id)
    assert key.key_id == keys.key_id and key.context == keys.bundle.context
    with pytest.raises(sdk.FheHttpError) as missing:
        sdk.fetch_public_key(api, TOKEN, "nope")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
