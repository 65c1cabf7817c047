"""Keys and sessions over HTTP for encrypted computation: a registered key's public
material (`GET /api/fhe/keys/{key_id}/public`, PROTOCOL 1.1) and a session's insight
set-up (`PUT /api/sessions/{id}/fhe`). Tokens and keys are never printed or logged."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from confide.client.errors import ClientError
from fhe.keys import EncryptionKey

#: Seconds a request waits for the server.
HTTP_TIMEOUT_S = 60.0


class FheHttpError(ClientError):
    """A key or session request failed: `status` the HTTP status (None: no answer) and
    `code` the protocol error code."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _http_json(method: str, url: str, token: str, body: Any = None,
               timeout: float = HTTP_TIMEOUT_S) -> Any:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("the server URL must be http:// or https://")
    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            error = json.loads(e.read())["error"]
            code, message = str(error.get("code", "")), str(error.get("message", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = "", ""
        raise FheHttpError(f"{method} {urlsplit(url).path}: HTTP {e.code} {code}: {message}",
                           e.code, code) from None
    except urllib.error.URLError as e:
        raise FheHttpError(f"cannot reach {url}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise FheHttpError(f"no usable answer from {url}: {type(e).__name__}") from None


def fetch_public_key(http_url: str, token: str, key_id: str, *,
                     timeout: float = HTTP_TIMEOUT_S) -> EncryptionKey:
    """A registered key's context and public key (`GET /api/fhe/keys/{key_id}/public`),
    checked against `key_id` (the public key's sha256): encrypt for a therapist's key
    without an out-of-band copy. Raises FheHttpError (404: no such key) or FheError."""
    answer = _http_json("GET", f"{http_url.rstrip('/')}/api/fhe/keys/{key_id}/public", token,
                        timeout=timeout)
    if not isinstance(answer, dict):
        raise FheHttpError("the server's answer is not a JSON object")
    return EncryptionKey.from_json(answer, key_id)


def configure_session(http_url: str, token: str, session_id: str, key_id: str,
                      model: str | Mapping[str, Any] = "mood-risk-v1", *,
                      timeout: float = HTTP_TIMEOUT_S) -> dict[str, Any]:
    """Turn on encrypted insights for a chat session (`PUT /api/sessions/{id}/fhe`, a
    therapist of the session, under a key they own). Returns the server's answer."""
    body = {"key_id": key_id, "model": model if isinstance(model, str) else dict(model)}
    answer = _http_json("PUT", f"{http_url.rstrip('/')}/api/sessions/{session_id}/fhe", token,
                        body, timeout=timeout)
    return dict(answer) if isinstance(answer, dict) else {}
