"""JWT verification (PyJWT).

HS256 with a shared secret by default; RS256/ES256 with a PEM public key in production.
Dev-token minting lives in `confide.tokens` (the SDK uses it too) and is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import jwt

from confide.config import Settings
from confide.errors import Unauthorized
from confide.protocol import Role
from confide.tokens import ROLES, mint_token

__all__ = ["ROLES", "Principal", "TokenVerifier", "mint_token"]


@dataclass(frozen=True)
class Principal:
    """Who is on the other end of a connection or request."""

    user: str
    role: Role
    sessions: frozenset[str]
    expires_at: float

    def may_join(self, session_id: str) -> bool:
        return "*" in self.sessions or session_id in self.sessions


class TokenVerifier:
    """HS256 with the shared secret, or RS256/ES256 with a PEM public key or a JWKS file
    (the token's `kid` picks the key)."""

    def __init__(self, settings: Settings) -> None:
        self._jwks: dict[str, Any] = {}
        self._key: Any = None
        if settings.jwt_jwks is not None:
            keyset = jwt.PyJWKSet.from_json(settings.jwt_jwks.read_text())
            self._jwks = {k.key_id: k for k in keyset.keys if k.key_id}
            self._algorithms = ["RS256", "ES256"]
        elif settings.jwt_public_key is not None:
            self._key = settings.jwt_public_key.read_text()
            self._algorithms = ["RS256", "ES256"]
        else:
            self._key = settings.signing_secret()
            self._algorithms = ["HS256"]
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        #: Identity providers' clocks differ from ours: `exp`, `nbf` and `iat` get this slack.
        self._leeway = settings.jwt_leeway_s

    def _key_for(self, token: str) -> Any:
        if not self._jwks:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str) or kid not in self._jwks:
            raise jwt.InvalidTokenError("unknown key id")
        return self._jwks[kid]

    def verify(self, token: str) -> Principal:
        """The token's principal, or `Unauthorized` (close 4401) with no token detail."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key_for(token),
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except (jwt.PyJWTError, TypeError, ValueError):  # also: a key of another type
            raise Unauthorized("invalid token") from None
        sub, role = claims["sub"], claims.get("role", "client")
        sessions = claims.get("sessions", [])
        if not isinstance(sub, str) or not sub or len(sub) > 128:
            raise Unauthorized("invalid token subject")
        if not isinstance(role, str) or role not in ROLES:
            raise Unauthorized("invalid token role")
        if not isinstance(sessions, list) or not all(isinstance(s, str) for s in sessions):
            raise Unauthorized("invalid sessions claim")
        return Principal(sub, cast(Role, role), frozenset(sessions), float(claims["exp"]))
