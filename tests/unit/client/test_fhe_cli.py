"""`confide fhe` and the SDK helpers of confide/client/fhe.py, with the (insecure, fast)
`test` preset: key files, upload over HTTP, submit and watch against a scripted server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from confide.client import fhe as sdk
from confide.client.cli import main
from fhe.client import KeySet, decrypt, encrypt, load_keys, save_keys
from fhe.errors import FheError
from fhe.keys import PublicBundle
from fhe.models import MOOD_RISK_V1
from tests.unit.client.conftest import Frame, Responder, json_api, running, send

TOKEN = "owner-token-0123456789"
#: Seconds to wait on any condition.
WAIT_S = 10.0


@pytest.fixture(autouse=True)
def _one_openfhe_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `test` key set written by the CLI: public parts and the secret key."""
    path = tmp_path_factory.mktemp("fhe") / "keys"
    assert main(["fhe", "keygen", "--preset", "test", "--dir", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def keys(key_dir: Path) -> KeySet:
    return load_keys(key_dir)


@pytest.fixture(scope="module")
def public_dir(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same key's public parts only."""
    return save_keys(keys, tmp_path_factory.mktemp("fhe") / "public")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- keygen


def test_keygen_writes_the_secret_key_0600_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "k"
    assert main(["fhe", "keygen", "--preset", "test", "--dir", str(target)]) == 0
    out, err = capsys.readouterr()
    keys = load_keys(target)
    secret = keys.require_secret().data
    assert f"key_id: {keys.key_id}" in out.splitlines()
    assert "never" in err and "leaves this directory" in err and "NOT secure" in err
    assert b64(secret) not in out + err
    names = {p.name for p in target.iterdir()}
    assert names == {
        "keyset.json",
        "context.bin",
        "public_key.bin",
        "eval_mult_key.bin",
        "rotation_keys.bin",
        "secret_key.bin",
    }
    assert stat.S_IMODE((target / "secret_key.bin").stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) & 0o077 == 0
    assert (target / "secret_key.bin").read_bytes() == secret

    # An existing key set is not replaced by accident.
    assert main(["fhe", "keygen", "--preset", "test", "--dir", str(target)]) == 1
    assert "--force" in capsys.readouterr().err
    assert load_keys(target).key_id == keys.key_id
    assert main(["fhe", "keygen", "--preset", "test", "--dir", str(target), "--force"]) == 0
    assert load_keys(target).key_id != keys.key_id


def test_save_keys_writes_no_secret(keys: KeySet, public_dir: Path) -> None:
    secret = keys.require_secret().data
    assert not (public_dir / "secret_key.bin").exists()
    for path in public_dir.iterdir():
        assert secret not in path.read_bytes(), path.name
    copy = load_keys(public_dir)
    assert copy.secret_key is None and copy.key_id == keys.key_id


# --------------------------------------------------------------------------- upload


RECEIVED: list[tuple[str, dict[str, str], bytes]] = []


def _keys(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
    """POST /api/fhe/keys: 201 with the key_id; label `taken` → 409, label `bad` → 400."""
    body = json.loads(raw)
    label = body.get("label")
    if label == "taken":
        return 409, {"error": {"code": "conflict", "message": "key owned by bob"}}
    if label == "bad":
        return 400, {"error": {"code": "invalid_message", "message": "no context"}}
    return 201, {"key_id": PublicBundle.from_json(body).key_id}


@pytest.fixture
def key_api() -> Iterator[str]:
    RECEIVED.clear()
    with json_api(_keys, RECEIVED) as url:
        yield url


def test_upload_posts_exactly_the_public_bundle(
    key_api: str, key_dir: Path, keys: KeySet, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fhe", "upload", "--dir", str(key_dir), "--url", key_api, "--token", TOKEN]
    assert main([*argv, "--label", "mood study"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"key_id: {keys.key_id}"
    assert TOKEN not in out + err

    [(path, headers, raw)] = RECEIVED
    assert path == "/api/fhe/keys"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    body = json.loads(raw)
    assert body == {**keys.bundle.to_json(), "label": "mood study"}
    assert set(body) == {"context", "public_key", "eval_mult_key", "rotation_keys", "label"}
    secret = keys.require_secret().data
    assert secret not in raw and b64(secret).encode() not in raw
    for name in ("context", "public_key", "eval_mult_key", "rotation_keys"):
        assert secret not in base64.b64decode(body[name]), name


def test_upload_reports_refusals_clearly(
    key_api: str, key_dir: Path, keys: KeySet, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fhe", "upload", "--dir", str(key_dir), "--url", key_api, "--token", TOKEN]
    assert main([*argv, "--label", "taken"]) == 1
    err = capsys.readouterr().err
    assert "already registered by another user" in err and "conflict" in err
    assert main([*argv, "--label", "bad"]) == 1
    err = capsys.readouterr().err
    assert "refused the key bundle" in err and "no context" in err
    assert TOKEN not in err

    with pytest.raises(sdk.KeyUploadError) as refused:
        sdk.upload_key(key_api, TOKEN, keys.bundle, label="taken")
    assert (refused.value.status, refused.value.code) == (409, "conflict")
    assert sdk.upload_key(key_api, TOKEN, keys.bundle) == keys.key_id
    assert "label" not in json.loads(RECEIVED[-1][2])


def test_upload_needs_a_key_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fhe", "upload", "--dir", str(tmp_path), "--url", "http://127.0.0.1:9"]
    assert main([*argv, "--token", TOKEN]) == 1
    assert "holds no key set" in capsys.readouterr().err


# --------------------------------------------------------------------------- submit, watch


class FheAnalytics(Responder):
    """Acks submits (unknown key → not_found); on an fhe subscribe with a key_id answers
    `subscribed`, then sends the scripted `aggregates`."""

    def __init__(self, aggregates: list[Frame] | None = None) -> None:
        super().__init__()
        self.aggregates = aggregates or []

    async def _answer(self, ws: ServerConnection, frame: Frame) -> None:
        if frame["type"] == "submit":
            if frame["key_id"] == "unknown":
                error = {"type": "error", "code": "not_found", "message": "no such key"}
                await send(ws, {**error, "id": frame["id"]})
            else:
                await send(ws, {"type": "ack", "id": frame["id"]})
        elif frame["type"] == "subscribe":
            answer = {"type": "subscribed", "stream": frame["stream"], "key_id": frame["key_id"]}
            await send(ws, answer)
            for aggregate in self.aggregates:
                await send(ws, aggregate)


async def run_cli(*argv: str) -> int:
    """`main(argv)` on a thread of its own (it runs its own event loop), within WAIT_S."""
    return await asyncio.wait_for(asyncio.to_thread(main, list(argv)), WAIT_S)


async def test_submit_sends_a_ciphertext_of_the_values(
    public_dir: Path, keys: KeySet, capsys: pytest.CaptureFixture[str]
) -> None:
    server = FheAnalytics()
    async with running(server.handler) as base:
        url = f"{base}/ws/analytics"
        argv = ["fhe", "submit", "mood", "--dir", str(public_dir), "--url", url]
        code = await run_cli(*argv, "--token", TOKEN, "--values", "1.5", "2", "-3")
        await server.until(lambda: not server.sockets, WAIT_S)
        assert code == 0
        [submit] = server.of_type("submit")
        assert submit["stream"] == "fhe:mood" and submit["key_id"] == keys.key_id
        assert set(submit) == {"type", "id", "stream", "key_id", "ciphertext"}
        values = decrypt(keys, base64.b64decode(submit["ciphertext"]), 3)
        assert values.tolist() == pytest.approx([1.5, 2.0, -3.0], abs=1e-6)
        assert server.hellos[0]["token"] == TOKEN
        out, err = capsys.readouterr()
        assert f"ack {submit['id']}" in out and "fhe:mood" in out
        assert submit["ciphertext"][:64] not in out + err and TOKEN not in out + err

        # fhe: prefix accepted as is; an unknown key gets a hint, not a traceback.
        argv[2] = "fhe:mood"
        code = await run_cli(*argv, "--token", TOKEN, "--values", "7", "--key-id", "unknown")
        assert code == 1
        assert "not_found" in capsys.readouterr().err
        assert server.of_type("submit")[-1]["stream"] == "fhe:mood"


async def test_submit_refuses_more_values_than_slots(
    public_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [str(i) for i in range(65)]  # the test preset has 64 slots
    argv = ["fhe", "submit", "mood", "--dir", str(public_dir), "--token", TOKEN]
    url = "ws://127.0.0.1:9/ws/analytics"  # never reached: refused before connecting
    assert await run_cli(*argv, "--url", url, "--values", *values) == 1
    assert "1..64 values" in capsys.readouterr().err


async def test_watch_decrypts_aggregates(
    key_dir: Path, keys: KeySet, capsys: pytest.CaptureFixture[str]
) -> None:
    total = encrypt(keys, [4.5, 6.0, -9.0, 0.25]).b64()
    mean = encrypt(keys, [1.5, 2.0, -3.0]).b64()
    server = FheAnalytics(
        [
            {
                "type": "aggregate",
                "stream": "fhe:mood",
                "key_id": keys.key_id,
                "count": 3,
                "sum": total,
                "mean": mean,
                "ts": 1_700_000_000.0,
            },
            {
                "type": "aggregate",
                "stream": "fhe:mood",
                "key_id": keys.key_id,
                "count": 4,
                "sum": b64(b"not a ciphertext"),
            },
            {
                "type": "aggregate",
                "stream": "fhe:mood",
                "key_id": keys.key_id,
                "count": 5,
                "sum": total,
                "ts": 1_700_000_001.0,
            },
        ]
    )
    async with running(server.handler) as base:
        argv = ["fhe", "watch", "fhe:mood", "--dir", str(key_dir), "--url", f"{base}/ws/analytics"]
        code = await run_cli(*argv, "--token", TOKEN, "--length", "3", "--frames", "2")
    assert code == 0
    [subscribe] = server.of_type("subscribe")
    assert subscribe == {"type": "subscribe", "stream": "fhe:mood", "key_id": keys.key_id}
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("* watching fhe:mood under key ")
    assert lines[1].endswith("fhe:mood count=3")
    assert lines[2] == "  sum  = [4.5, 6, -9]"
    assert lines[3] == "  mean = [1.5, 2, -3]"
    assert lines[4] == "! cannot decrypt this aggregate (MalformedCiphertext)"
    assert lines[5].endswith("fhe:mood count=5")
    assert lines[6] == "  sum  = [4.5, 6, -9]"
    assert len(lines) == 7  # no mean in the last frame, no close line
    assert total[:64] not in out + err and TOKEN not in out + err


async def test_watch_refuses_without_the_secret_key(
    public_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = FheAnalytics()
    async with running(server.handler) as base:
        url = f"{base}/ws/analytics"
        argv = ["fhe", "watch", "mood", "--dir", str(public_dir), "--url", url]
        assert await run_cli(*argv, "--token", TOKEN) == 1
    assert "holds no secret key" in capsys.readouterr().err
    assert server.hellos == []  # refused before connecting


# --------------------------------------------------------------------------- helpers


def test_decode_aggregate_and_its_refusals(keys: KeySet) -> None:
    frame = {
        "type": "aggregate",
        "stream": "fhe:x",
        "key_id": keys.key_id,
        "count": 2,
        "sum": sdk.encrypt_b64(keys, [2.0, 4.0]),
        "ts": 5,
    }
    decoded = sdk.decode_aggregate(keys, frame, 2)
    assert decoded["count"] == 2 and decoded["mean"] is None and decoded["ts"] == 5.0
    assert decoded["sum"] == pytest.approx([2.0, 4.0], abs=1e-6)
    assert len(sdk.decode_aggregate(keys, frame, 1000)["sum"]) == 64  # clamped to the slots
    with pytest.raises(ValueError, match="another key"):
        sdk.decode_aggregate(keys, {**frame, "key_id": "other"}, 2)
    with pytest.raises(FheError):
        sdk.decode_aggregate(keys, {**frame, "sum": "!!not base64"}, 2)
    with pytest.raises(ValueError, match="finite"):
        sdk.encrypt_b64(keys, [float("nan")])
    assert sdk.fhe_stream("mood") == sdk.fhe_stream("fhe:mood") == "fhe:mood"
    with pytest.raises(ValueError):
        sdk.fhe_stream("fhe:")
    assert sdk.format_values([4.4999999, -0.00000002, 1e6]) == "[4.5, 0, 1000000]"


def test_features_and_insights(keys: KeySet) -> None:
    field = sdk.encrypt_features(keys, {"low_mood": 0.5, "self_harm_thoughts": 1.0})
    assert field["key_id"] == keys.key_id
    values = decrypt(keys, base64.b64decode(field["ciphertext"]), len(MOOD_RISK_V1.features))
    assert values.tolist() == pytest.approx([0.5, 0, 0, 0, 0, 0, 0, 1.0], abs=1e-6)
    with pytest.raises(ValueError, match="no feature"):
        sdk.encrypt_features(keys, {"low_mod": 0.5})
    insight = {
        "type": "insight",
        "for_offset": 3,
        "key_id": keys.key_id,
        "model": MOOD_RISK_V1.name,
        "ciphertext": sdk.encrypt_b64(keys, [0.12] * 64),
    }
    assert sdk.decrypt_insight(keys, insight) == pytest.approx(0.12, abs=1e-6)


def test_the_sdk_loads_no_openfhe() -> None:
    code = (
        "import sys, confide.client, confide.client.cli, confide.client.fhe;"
        "assert 'openfhe' not in sys.modules and 'fhe.client' not in sys.modules"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
