"""`confide fhe session-config` and `confide fhe features`: encrypted insights for a chat
session, and a message's `features` encrypted for a key fetched from the server."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import TextIO

from confide.client.fhe import (
    CommandError,
    configure_session,
    encrypt_features,
    fetch_public_key,
    load_key_dir,
)
from confide.client.fhe_commands import _checked
from fhe.errors import FheError


def session_config_command(http_url: str, token: str, session_id: str, key_id: str | None,
                           directory: str | None, model: str, *,
                           out: TextIO | None = None) -> int:
    """`confide fhe session-config`: encrypted insights for a session under your key."""
    if key_id is None:
        if directory is None:
            raise CommandError("give --key-id or --dir")
        key_id = load_key_dir(directory).key_id
    result = _checked(configure_session, http_url, token, session_id, key_id, model)
    print(json.dumps(result), file=out or sys.stdout, flush=True)
    return 0


def features_command(http_url: str, token: str, key_id: str, values: Sequence[str],
                     model: str, *, out: TextIO | None = None) -> int:
    """`confide fhe features`: fetch the therapist's public key from the server, encrypt
    NAME=VALUE features under it, print the message's `features` field as JSON."""
    features: dict[str, float] = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            features[name] = float(value) if sep else math.nan
        except ValueError:
            features[name] = math.nan
        if not math.isfinite(features[name]):
            raise CommandError(f"{item!r}: expected NAME=NUMBER")
    try:
        key = fetch_public_key(http_url, token, key_id)
    except FheError as e:
        raise CommandError(f"the server's public key is unusable: {e}") from None
    field = _checked(encrypt_features, key, features, model)
    print(json.dumps(field), file=out or sys.stdout, flush=True)
    return 0
