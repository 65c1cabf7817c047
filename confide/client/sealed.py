"""End-to-end encrypted chat bodies, the same format as the browser client (web/src/crypto.ts).

A chat message with `encrypted: true` carries `{"ciphertext", "alg", "key_id"}`; the server
stores and forwards it without reading it. With a 32-byte session key the members share:

- `alg` is `"A256GCM"` (AES-256-GCM);
- `key_id` is the first 16 hex digits of SHA-256(key);
- `ciphertext` is base64(iv (12 bytes) || AES-GCM(key, iv, UTF-8 JSON of the body,
  associated data = the UTF-8 session id)).

So Python and browser members of a session read each other's messages:
`chat.send_message(seal_body(key, "s1", {"text": "hi"}), encrypted=True)`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from confide import b64

ALG = "A256GCM"
IV_BYTES = 12


class SealedBodyError(ValueError):
    """A body that cannot be opened with this key (never says more than why)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _check(key: bytes) -> None:
    if len(key) != 32:
        raise ValueError("the session key must be 32 bytes")


def seal_body(
    key: bytes, session_id: str, body: dict[str, Any], iv: bytes | None = None
) -> dict[str, str]:
    """`body` encrypted for the members of `session_id` who hold `key`."""
    _check(key)
    iv = iv if iv is not None else os.urandom(IV_BYTES)
    plain = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    sealed = AESGCM(key).encrypt(iv, plain, session_id.encode())
    return {"ciphertext": b64.encode(iv + sealed), "alg": ALG,
            "key_id": key_id(key)}


def open_body(key: bytes, session_id: str, sealed: dict[str, Any]) -> dict[str, Any]:
    """The body inside `sealed`; raises `SealedBodyError` when it cannot be opened."""
    _check(key)
    if sealed.get("alg") != ALG:
        raise SealedBodyError("unsupported alg")
    if sealed.get("key_id") != key_id(key):
        raise SealedBodyError("sealed under another key")
    try:
        raw = b64.decode(str(sealed.get("ciphertext", "")))
    except ValueError:
        raise SealedBodyError("ciphertext is not base64") from None
    if len(raw) < IV_BYTES + 16:
        raise SealedBodyError("ciphertext too short")
    try:
        plain = AESGCM(key).decrypt(raw[:IV_BYTES], raw[IV_BYTES:], session_id.encode())
    except InvalidTag:
        raise SealedBodyError("authentication failed (wrong key or altered message)") from None
    body = json.loads(plain)
    if not isinstance(body, dict):
        raise SealedBodyError("the decrypted body is not an object")
    return body
