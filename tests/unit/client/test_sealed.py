"""confide/client/sealed.py: AES-GCM chat bodies, byte-compatible with the browser client."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from confide.client.sealed import ALG, SealedBodyError, key_id, open_body, seal_body
from confide.protocol import ChatMessage

#: Shared with web/test/crypto.test.ts: the browser seals to the same bytes and opens it.
VECTOR = Path(__file__).resolve().parents[3] / "web" / "test" / "vectors" / "sealed-body.json"
KEY = bytes(range(32))


def test_the_shared_vector() -> None:
    v = json.loads(VECTOR.read_text())
    key, iv = base64.b64decode(v["key"]), base64.b64decode(v["iv"])
    assert seal_body(key, v["session_id"], v["body"], iv) == v["sealed"]
    assert open_body(key, v["session_id"], v["sealed"]) == v["body"]


def test_round_trip_and_shape() -> None:
    sealed = seal_body(KEY, "s1", {"text": "secret words"})
    assert set(sealed) == {"ciphertext", "alg", "key_id"}
    assert sealed["alg"] == ALG and sealed["key_id"] == key_id(KEY)
    assert "secret" not in json.dumps(sealed)
    ChatMessage(type="message", id="m1", body=sealed, encrypted=True)  # the server accepts it
    assert open_body(KEY, "s1", sealed) == {"text": "secret words"}
    assert seal_body(KEY, "s1", {"a": 1}) != seal_body(KEY, "s1", {"a": 1})  # fresh iv


@pytest.mark.parametrize(
    "change",
    [
        lambda s: {**s, "alg": "A128GCM"},
        lambda s: {**s, "key_id": "0" * 16},
        lambda s: {**s, "ciphertext": "not base64!"},
        lambda s: {**s, "ciphertext": base64.b64encode(b"short").decode()},
        lambda s: {**s, "ciphertext": s["ciphertext"][:-4] + "AAA="},
    ],
)
def test_refuses_what_it_cannot_open(change: object) -> None:
    sealed = seal_body(KEY, "s1", {"text": "x"})
    with pytest.raises(SealedBodyError):
        open_body(KEY, "s1", change(sealed))  # type: ignore[operator]


def test_bound_to_the_session_and_key() -> None:
    sealed = seal_body(KEY, "s1", {"text": "x"})
    with pytest.raises(SealedBodyError):
        open_body(KEY, "s2", sealed)
    with pytest.raises(SealedBodyError):
        open_body(bytes(32), "s1", sealed)
    with pytest.raises(ValueError):
        seal_body(b"short", "s1", {})
