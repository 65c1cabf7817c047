"""HS256 development tokens: minting, and where the dev secret is kept.

Shared by the server (`confide.auth`, `confide.config`) and the SDK's CLI (`confide token`),
which may not import server modules: this module needs only PyJWT and the wire models.
"""

from __future__ import annotations

import time
from typing import Any, get_args

import jwt

from confide.protocol import Role

ROLES: frozenset[str] = frozenset(get_args(Role))

#: The development secret's file under `CONFIDE_DATA_DIR`: written by the server when no
#: secret is configured (`Settings.signing_secret`), only ever read by the CLI.
DEV_SECRET_FILE = "dev-jwt-secret"


def mint_token(
    secret: str,
    sub: str,
    *,
    role: str = "client",
    sessions: list[str] | None = None,
    ttl_s: float = 24 * 3600,
    extra: dict[str, Any] | None = None,
) -> str:
    """An HS256 token for development and tests."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + int(ttl_s)}
    if sessions is not None:
        claims["sessions"] = sessions
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")
