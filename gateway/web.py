"""The browser side of the gateway: the built web client (`GET /static/...`), the demo page
(`GET /`) and development tokens for it (docs/web.md).

The files come from `web/dist`, built by `make install` (`npm ci && npm run build` in web/);
nothing is fetched from the internet at run time. Development tokens are minted only when
the server signs with its generated development secret (no `CONFIDE_JWT_SECRET`, public key
or JWKS configured): then anyone who can reach the server could mint one with the CLI too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import FileResponse

from confide.config import Settings
from confide.errors import Forbidden, InvalidMessage, NotFound
from confide.protocol import Role
from confide.tokens import mint_token

#: Where `npm run build` writes (override with CONFIDE_WEB_DIST for a packaged build).
DEFAULT_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
}
#: Development tokens live for 8 hours.
DEV_TOKEN_TTL_S = 8 * 3600


def static_file(dist: Path, name: str) -> tuple[Path, str]:
    """The built file `name` under `dist` and its media type; `NotFound` for anything else
    (unknown names, other extensions, paths that leave `dist`)."""
    root = dist.resolve()
    path = (root / name).resolve()
    media = MEDIA_TYPES.get(path.suffix)
    if media is None or root not in path.parents or not path.is_file():
        raise NotFound("no such file (is the web client built? make install)")
    return path, media


def file_response(name: str, dist: Path = DEFAULT_DIST) -> FileResponse:
    path, media = static_file(dist, name)
    headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
    return FileResponse(path, media_type=media, headers=headers)


def dev_tokens_enabled(settings: Settings) -> bool:
    return not settings.jwt_secret and settings.jwt_public_key is None and settings.jwt_jwks is None


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sub: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role = "client"
    sessions: list[str] = Field(default_factory=lambda: ["*"], max_length=64)


def mint_dev_token(settings: Settings, body: Any) -> dict[str, str]:
    """`POST /api/dev/token`: a token signed with the development secret."""
    if not dev_tokens_enabled(settings):
        raise Forbidden("development tokens are off: the server has a configured key")
    try:
        req = DevTokenRequest.model_validate(body)
    except ValidationError:
        raise InvalidMessage("body must be {sub, role?, sessions?}") from None
    extra: dict[str, Any] = {}
    if settings.jwt_audience:
        extra["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        extra["iss"] = settings.jwt_issuer
    token = mint_token(settings.signing_secret(), req.sub, role=req.role,
                       sessions=req.sessions, ttl_s=DEV_TOKEN_TTL_S, extra=extra)
    return {"token": token}
