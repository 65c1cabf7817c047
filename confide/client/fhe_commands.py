"""The `confide fhe` commands: keygen, upload, submit and watch (docs/sdk.md, "CLI"), built
on the helpers of `confide.client.fhe`. Nothing here prints or logs a secret key, a token or
a ciphertext.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from confide.client.analytics import AnalyticsClient
from confide.client.errors import ClientError, ServerError
from confide.client.fhe import (
    SECRET_FILE,
    UPLOAD_TIMEOUT_S,
    CommandError,
    _short,
    decode_aggregate,
    encrypt_b64,
    fhe_stream,
    generate_key_dir,
    load_key_dir,
    render_aggregate,
    upload_key,
)
from confide.client.terminal import render_state
from fhe.errors import FheError
from fhe.presets import PRESETS

_T = TypeVar("_T")

#: Slots `confide fhe watch` prints unless told otherwise.
DEFAULT_WATCH_LENGTH = 8
#: Seconds the commands try to connect before giving up.
CONNECT_TIMEOUT_S = 15.0


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
