"""Encrypted computation from the client side: key directories, key upload, encrypted
contributions, and local decryption of aggregates and insights; plus the `confide fhe`
commands built on them (docs/sdk.md, "Encrypted computation").

OpenFHE (`fhe.client`) is imported inside the functions that need it, so `import
confide.client` (and the rest of the CLI) works without loading it. The secret key never
leaves its directory: uploads carry `PublicBundle.to_json()` only, and nothing here prints
or logs a secret key, a token or a ciphertext.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypedDict, TypeVar
from urllib.parse import urlsplit

from confide.client.analytics import AnalyticsClient
from confide.client.errors import ClientError, ServerError
from confide.client.fhe_http import FheHttpError, configure_session, fetch_public_key
from confide.client.terminal import render_state
from fhe.errors import FheError
from fhe.keys import CiphertextBlob, EncryptionKey, PublicBundle
from fhe.models import MODELS, LinearModel
from fhe.presets import PRESETS

if TYPE_CHECKING:
    from fhe.client import KeySet

_T = TypeVar("_T")
__all__ = ["FheHttpError", "configure_session", "fetch_public_key"]

#: Prefix of the analytics streams that carry encrypted aggregates.
STREAM_PREFIX = "fhe:"
#: Files `fhe.client.save_keys` / `save_secret_key` write into a key directory.
META_FILE = "keyset.json"
SECRET_FILE = "secret_key.bin"
#: Slots `confide fhe watch` prints unless told otherwise.
DEFAULT_WATCH_LENGTH = 8
#: Seconds `upload_key` waits for the server (bundles of the `scoring` preset are ~35 MB).
UPLOAD_TIMEOUT_S = 60.0
#: Seconds the commands try to connect before giving up.
CONNECT_TIMEOUT_S = 15.0


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


# --------------------------------------------------------------------------- commands


def _checked(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """`fn(...)`, a ValueError (a bad argument) raised as `CommandError`."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise CommandError(str(e)) from None


def keygen_command(
    directory: str, preset: str, *, force: bool = False, out: TextIO | None = None
) -> int:
    """`confide fhe keygen`: a new key set in `directory`; prints its key_id and a warning
    (on stderr) about the secret key."""
    out = out or sys.stdout
    keys = _checked(generate_key_dir, directory, preset, force=force)
    p = PRESETS[preset]
    print(f"key_id: {keys.key_id}", file=out)
    print(f"preset: {p.name} ({p.slots} slots, {p.security})", file=out)
    print(f"wrote:  {Path(directory)} (public parts and {SECRET_FILE})", file=out, flush=True)
    warning = (
        f"WARNING: {Path(directory) / SECRET_FILE} is the secret key (mode 0600). It never "
        "leaves this directory: `confide fhe upload` sends only the public parts. Keep it "
        "private and backed up; without it nothing encrypted under this key can be decrypted."
    )
    if p.security == "HEStd_NotSet":
        warning += f"\nWARNING: preset {p.name!r} is NOT secure: for tests only."
    print(warning, file=sys.stderr, flush=True)
    return 0


def upload_command(
    http_url: str,
    token: str,
    directory: str,
    label: str | None = None,
    *,
    timeout: float = UPLOAD_TIMEOUT_S,
    out: TextIO | None = None,
) -> int:
    """`confide fhe upload`: register the directory's public bundle; prints the key_id."""
    keys = load_key_dir(directory)
    key_id = _checked(upload_key, http_url, token, keys, label, timeout=timeout)
    print(f"key_id: {key_id}", file=out or sys.stdout, flush=True)
    return 0


async def submit_command(
    url: str,
    token: str,
    stream: str,
    directory: str,
    values: Sequence[float],
    key_id: str | None = None,
    *,
    timeout: float | None = None,
    out: TextIO | None = None,
) -> int:
    """`confide fhe submit`: encrypt `values` under the directory's key (public parts are
    enough) and contribute them to `fhe:<stream>`; prints the ack."""
    name = _checked(fhe_stream, stream)
    keys = load_key_dir(directory)
    ciphertext = await asyncio.to_thread(_checked, encrypt_b64, keys, values)
    client = AnalyticsClient(url, token)
    try:
        await client.connect(CONNECT_TIMEOUT_S)
        try:
            ack = await client.submit(name, key_id or keys.key_id, ciphertext, timeout=timeout)
        except ServerError as e:
            if e.code == "not_found":
                raise ClientError(f"{e} (register the key first: confide fhe upload)") from None
            raise
    finally:
        await client.disconnect()
    print(
        f"ack {ack.get('id')}: {len(values)} value(s) to {name} "
        f"under key {_short(key_id or keys.key_id)}…",
        file=out or sys.stdout,
        flush=True,
    )
    return 0


async def watch_command(
    url: str,
    token: str,
    stream: str,
    directory: str,
    length: int = DEFAULT_WATCH_LENGTH,
    *,
    frames: int | None = None,
    out: TextIO | None = None,
) -> int:
    """`confide fhe watch`: subscribe (as the key's owner) to the aggregates of
    `fhe:<stream>` and print each one decrypted locally, until interrupted, the client
    closes, or `frames` aggregates were shown. Refuses a directory without the secret key."""
    out = out or sys.stdout
    name = _checked(fhe_stream, stream)
    if length < 1:
        raise CommandError("--length must be at least 1")
    keys = load_key_dir(directory, need_secret=True)

    def show(line: str | None) -> None:
        if line:
            print(line, file=out, flush=True)

    client = AnalyticsClient(url, token)
    removers = [client.on(kind, lambda e: show(render_state(e))) for kind in ("state", "close")]
    shown = 0
    try:
        await client.connect(CONNECT_TIMEOUT_S)
        subscription = await client.subscribe(name, keys.key_id)
        show(f"* watching {name} under key {_short(keys.key_id)}… (decrypted here)")
        async for frame in subscription:
            if frame.get("type") != "aggregate":
                continue
            try:
                aggregate = await asyncio.to_thread(decode_aggregate, keys, frame, length)
            except (ValueError, FheError, RuntimeError) as e:
                show(f"! cannot decrypt this aggregate ({type(e).__name__})")
                continue
            show(render_aggregate(aggregate))
            shown += 1
            if frames is not None and shown >= frames:
                break
    finally:
        for remove in removers:  # our own disconnect is no news
            remove()
        await client.disconnect()
    done = frames is not None and shown >= frames
    return 0 if done or client.close_code == 1000 else 1

