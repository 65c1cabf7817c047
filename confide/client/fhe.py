"""Encrypted computation from the client side: key directories, key upload, encrypted
contributions, and local decryption of aggregates and insights (docs/sdk.md, "Encrypted
computation"); the `confide fhe` commands built on them are in `confide.client.fhe_commands`.

OpenFHE (`fhe.client`) is imported inside the functions that need it, so `import
confide.client` (and the rest of the CLI) works without loading it. The secret key never
leaves its directory: uploads carry `PublicBundle.to_json()` only, and nothing here prints
or logs a secret key, a token or a ciphertext.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from confide.client.errors import ClientError
from confide.client.fhe_http import FheHttpError, configure_session, fetch_public_key
from fhe.keys import CiphertextBlob, EncryptionKey, PublicBundle
from fhe.models import MODELS, LinearModel
from fhe.presets import PRESETS

if TYPE_CHECKING:
    from fhe.client import KeySet

__all__ = ["FheHttpError", "configure_session", "fetch_public_key"]

#: Prefix of the analytics streams that carry encrypted aggregates.
STREAM_PREFIX = "fhe:"
#: Files `fhe.client.save_keys` / `save_secret_key` write into a key directory.
META_FILE = "keyset.json"
SECRET_FILE = "secret_key.bin"
#: Seconds `upload_key` waits for the server (bundles of the `scoring` preset are ~35 MB).
UPLOAD_TIMEOUT_S = 60.0


class KeyDirError(ClientError):
    """A key directory that is missing, unreadable, inconsistent, or lacks what the
    operation needs (the secret key to decrypt; room for a new key set)."""


class KeyUploadError(ClientError):
    """`POST /api/fhe/keys` failed. `status` is the HTTP status (None: no answer) and `code`
    the protocol error code (`invalid_message` for 400, `conflict` for 409, ...)."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CommandError(ClientError):
    """A `confide fhe` argument the command cannot use (the CLI prints it and exits 1)."""


class DecryptedAggregate(TypedDict):
    """An `aggregate` frame with `sum` (and `mean`) decrypted to their first slots."""

    stream: str
    key_id: str
    count: int
    ts: float | None
    sum: list[float]
    mean: list[float] | None


# --------------------------------------------------------------------------- helpers


def fhe_stream(name: str) -> str:
    """The analytics stream for `name`, given with or without the `fhe:` prefix."""
    bare = name.removeprefix(STREAM_PREFIX)
    if not bare:
        raise ValueError("an fhe stream needs a name, e.g. fhe:mood")
    return STREAM_PREFIX + bare


def _short(key_id: str) -> str:
    return key_id[:16]


def _bundle(keys: KeySet | PublicBundle | EncryptionKey) -> PublicBundle | EncryptionKey:
    return keys if isinstance(keys, (PublicBundle, EncryptionKey)) else keys.bundle


def generate_key_dir(
    directory: str | os.PathLike[str], preset: str = "aggregation", *, force: bool = False
) -> KeySet:
    """Generate a key set and write it into `directory`: the public parts and, explicitly,
    the secret key (mode 0600; the directory is created 0700). Refuses a directory that
    already holds a key set unless `force` (replacing it loses the old secret key, and with
    it everything encrypted under that key)."""
    from fhe.client import generate_keys, save_secret_key

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    path = Path(directory)
    if not force and ((path / META_FILE).exists() or (path / SECRET_FILE).exists()):
        raise KeyDirError(
            f"{path} already holds a key set; pass --force to replace it "
            "(its secret key would be lost)"
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = generate_keys(preset)
    save_secret_key(keys, path)
    return keys


def load_key_dir(directory: str | os.PathLike[str], *, need_secret: bool = False) -> KeySet:
    """The key set saved in `directory`; `need_secret` refuses one without its secret key."""
    from fhe.client import load_keys

    path = Path(directory)
    if not (path / META_FILE).is_file():
        raise KeyDirError(f"{path} holds no key set (create one with `confide fhe keygen`)")
    try:
        keys = load_keys(path)
    except (OSError, ValueError, KeyError) as e:
        raise KeyDirError(f"cannot read the key set in {path}: {type(e).__name__}") from None
    if need_secret and keys.secret_key is None:
        raise KeyDirError(
            f"{path} holds no secret key ({SECRET_FILE}): only the key's owner, with the "
            "directory `confide fhe keygen` wrote, can decrypt"
        )
    return keys


def upload_key(
    http_url: str,
    token: str,
    keys: KeySet | PublicBundle,
    label: str | None = None,
    *,
    timeout: float = UPLOAD_TIMEOUT_S,
) -> str:
    """Register the key's public bundle (`POST /api/fhe/keys`, never the secret key) and
    return the `key_id` of the 201 answer. The token's user becomes the key's owner. Raises
    `KeyUploadError`: 400 the server refused the bundle, 409 another user registered it."""
    if urlsplit(http_url).scheme not in ("http", "https"):
        raise ValueError("the server URL must be http:// or https://")
    bundle = keys if isinstance(keys, PublicBundle) else keys.bundle
    body: dict[str, Any] = dict(bundle.to_json())
    if label is not None:
        body["label"] = label
    request = urllib.request.Request(
        http_url.rstrip("/") + "/api/fhe/keys",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise _upload_error(e.code, e.read(), bundle.key_id) from None
    except urllib.error.URLError as e:
        raise KeyUploadError(f"cannot reach {http_url}: {e.reason}") from None
    except (OSError, ValueError) as e:  # timeouts, a non-JSON answer
        raise KeyUploadError(f"no usable answer from {http_url}: {type(e).__name__}") from None
    key_id = answer.get("key_id") if isinstance(answer, dict) else None
    if key_id != bundle.key_id:
        raise KeyUploadError("the server answered with another key_id than the bundle's")
    return str(key_id)


def _upload_error(status: int, raw: bytes, key_id: str) -> KeyUploadError:
    try:
        error = json.loads(raw)["error"]
        code, message = str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message = "", ""
    detail = f"{code}: {message}" if code or message else f"HTTP {status}"
    if status == 400:
        text = f"the server refused the key bundle ({detail})"
    elif status == 409:
        text = f"key {_short(key_id)}… is already registered by another user ({detail})"
    elif status in (401, 403):
        text = f"not allowed to register keys with this token ({detail})"
    else:
        text = f"key upload failed with HTTP {status} ({detail})"
    return KeyUploadError(text, status, code)


def encrypt_b64(keys: KeySet | PublicBundle | EncryptionKey, values: Sequence[float]) -> str:
    """`values` encrypted under the key's public key (CKKS, one value a slot), as base64:
    the `ciphertext` of a `submit` frame. Raises ValueError for no values, more values
    than slots, or a value that is not finite."""
    from fhe.client import encrypt

    numbers = [float(v) for v in values]
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError("values must be finite numbers")
    return encrypt(_bundle(keys), numbers).b64()


def decrypt_b64(keys: KeySet, ciphertext_b64: str, length: int) -> list[float]:
    """The first `length` slots of a base64 ciphertext, decrypted with the secret key."""
    from fhe.client import decrypt

    blob = CiphertextBlob.from_b64(ciphertext_b64, field_name="ciphertext")
    slots = PRESETS[keys.preset].slots if keys.preset in PRESETS else length
    return [float(v) for v in decrypt(keys, blob, max(1, min(length, slots)))]


def decode_aggregate(keys: KeySet, frame: Mapping[str, Any], length: int) -> DecryptedAggregate:
    """Decrypt an `aggregate` frame's `sum` (and `mean`, when present) to their first
    `length` slots. Raises ValueError for a frame of another key, and `fhe.errors.FheError`
    for a ciphertext that is not valid base64 or not a ciphertext."""
    if frame.get("key_id") != keys.key_id:
        raise ValueError("the aggregate is under another key")
    total = frame.get("sum")
    if not isinstance(total, str):
        raise ValueError("the aggregate has no sum")
    mean = frame.get("mean")
    ts = frame.get("ts")
    return {
        "stream": str(frame.get("stream", "")),
        "key_id": keys.key_id,
        "count": int(frame.get("count") or 0),
        "ts": float(ts) if isinstance(ts, (int, float)) else None,
        "sum": decrypt_b64(keys, total, length),
        "mean": decrypt_b64(keys, mean, length) if isinstance(mean, str) else None,
    }


def _model(model: str | LinearModel) -> LinearModel:
    if isinstance(model, LinearModel):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}") from None


def encrypt_features(
    keys: KeySet | PublicBundle | EncryptionKey,
    features: Mapping[str, float],
    model: str | LinearModel = "mood-risk-v1",
) -> dict[str, str]:
    """A chat message's `features` field, `{"key_id", "ciphertext"}`: the feature values in
    the model's order (missing ones 0), encrypted under the therapist's key. Raises
    ValueError for a feature name the model does not know."""
    m = _model(model)
    unknown = sorted(set(features) - set(m.features))
    if unknown:
        raise ValueError(f"{m.name} has no feature(s) {unknown}; known: {list(m.features)}")
    return {"key_id": _bundle(keys).key_id, "ciphertext": encrypt_b64(keys, m.vector(features))}


def decrypt_insight(keys: KeySet, frame: Mapping[str, Any]) -> float:
    """The score w·x + b an `insight` frame carries, decrypted with the secret key."""
    if frame.get("key_id") != keys.key_id:
        raise ValueError("the insight is under another key")
    ciphertext = frame.get("ciphertext")
    if not isinstance(ciphertext, str):
        raise ValueError("the insight has no ciphertext")
    return decrypt_b64(keys, ciphertext, 1)[0]


def format_values(values: Sequence[float], digits: int = 4) -> str:
    """`[1.5, 2, 3]`: values rounded to `digits` decimals (CKKS is approximate)."""
    return "[" + ", ".join(format(round(v, digits) + 0.0, ".15g") for v in values) + "]"


def render_aggregate(aggregate: DecryptedAggregate) -> str:
    """A decrypted aggregate as three lines: stream, time and count; sum; mean."""
    ts = aggregate["ts"] if aggregate["ts"] is not None else time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(ts))
    lines = [
        f"[{stamp}] {aggregate['stream']} count={aggregate['count']}",
        f"  sum  = {format_values(aggregate['sum'])}",
    ]
    if aggregate["mean"] is not None:
        lines.append(f"  mean = {format_values(aggregate['mean'])}")
    return "\n".join(lines)
