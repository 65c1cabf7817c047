"""The `confide` command line: development tokens, notifications over REST, live terminals
for chat, the inbox and analytics, and encrypted computation (`confide fhe`; docs/sdk.md, "CLI").

Each subcommand is added by one `add_*` function listed in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from confide.client import fhe_commands, fhe_sessions, terminal
from confide.client.errors import ClientError
from confide.client.fhe import UPLOAD_TIMEOUT_S
from confide.tokens import DEV_SECRET_FILE, ROLES, mint_token
from fhe.presets import PRESETS

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
DEFAULT_HTTP_URL = "http://127.0.0.1:8000"
DEFAULT_ANALYTICS_URL = "ws://127.0.0.1:8000/ws/analytics"
#: Lifetime of the service token `confide notify` mints when given none.
NOTIFY_TOKEN_TTL_S = 300


def _secret(args: argparse.Namespace) -> str:
    """The HS256 secret: --secret, else CONFIDE_JWT_SECRET, else the dev secret file the
    server writes under CONFIDE_DATA_DIR (read only: the CLI never creates one)."""
    if args.secret:
        return str(args.secret)
    configured = os.environ.get("CONFIDE_JWT_SECRET")
    if configured:
        return configured
    path = Path(os.environ.get("CONFIDE_DATA_DIR") or "./data") / DEV_SECRET_FILE
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    except OSError as e:
        raise SystemExit(f"confide: cannot read the dev secret {path}: {e.strerror}") from None
    if not secret:
        raise SystemExit(
            "confide: no signing secret: give --secret, set CONFIDE_JWT_SECRET, or point "
            f"CONFIDE_DATA_DIR at the server's data directory ({path} is missing or empty)"
        )
    return secret


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("CONFIDE_TOKEN")
    if not token:
        raise SystemExit("confide: give --token or set CONFIDE_TOKEN")
    return str(token)


def _run(
    coro: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    return lambda args: asyncio.run(coro(args))


# --------------------------------------------------------------------------- token


def cmd_token(args: argparse.Namespace) -> int:
    token = mint_token(
        _secret(args), args.sub, role=args.role, sessions=args.sessions, ttl_s=args.ttl
    )
    print(token)
    return 0


def add_token(sub: SubParsers) -> None:
    p = sub.add_parser(
        "token",
        help="mint an HS256 development token",
        description="Signs with --secret, else CONFIDE_JWT_SECRET, else the dev "
        "secret file under CONFIDE_DATA_DIR (the one `make run` writes; read, never created).",
    )
    p.add_argument("--sub", required=True, help="user id")
    p.add_argument("--role", default="client", choices=sorted(ROLES))
    p.add_argument(
        "--sessions", nargs="*", metavar="ID", help="chat sessions it may join ('*': any)"
    )
    p.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
    p.add_argument(
        "--secret", help="HS256 secret (default: CONFIDE_JWT_SECRET, else the dev secret file)"
    )
    p.set_defaults(run=cmd_token)


# --------------------------------------------------------------------------- notify


def cmd_notify(args: argparse.Namespace) -> int:
    if urlsplit(args.url).scheme not in ("http", "https"):
        raise SystemExit("confide: --url must be http:// or https://")
    token = (
        args.token
        or os.environ.get("CONFIDE_TOKEN")
        or mint_token(_secret(args), "confide-cli", role="service", ttl_s=NOTIFY_TOKEN_TTL_S)
    )
    payload: dict[str, Any] = {
        "user": args.user,
        "kind": args.kind,
        "title": args.title,
        "body": args.body,
    }
    if args.data:
        try:
            payload["data"] = json.loads(args.data)
        except ValueError:
            raise SystemExit("confide: --data must be JSON") from None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    request = urllib.request.Request(
        args.url.rstrip("/") + "/api/notifications",
        data=json.dumps(payload).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as e:
        print(e.read().decode() or f"HTTP {e.code}", file=sys.stderr)
    except urllib.error.URLError as e:
        print(f"confide: {e.reason}", file=sys.stderr)
    return 1


def add_notify(sub: SubParsers) -> None:
    p = sub.add_parser("notify", help="send a notification (POST /api/notifications)")
    p.add_argument("user", help="recipient user id")
    p.add_argument("--title", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--kind", default="info")
    p.add_argument("--data", help="JSON object attached to the notification")
    p.add_argument("--url", default=DEFAULT_HTTP_URL, help=f"server (default {DEFAULT_HTTP_URL})")
    p.add_argument("--token", help="default: CONFIDE_TOKEN, else a dev service token")
    p.add_argument("--secret", help="HS256 secret for the dev service token")
    p.add_argument("--idempotency-key", help="retries with the same key create nothing new")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    p.set_defaults(run=cmd_notify)


# --------------------------------------------------------------------------- live terminals


def add_chat(sub: SubParsers) -> None:
    p = sub.add_parser("chat", help="interactive chat in one session")
    p.add_argument("url", help="ws://HOST:PORT/ws/chat/SESSION_ID")
    p.add_argument("--token", help="default: CONFIDE_TOKEN")
    p.set_defaults(run=_run(lambda a: terminal.chat(a.url, _token(a))))


def add_inbox(sub: SubParsers) -> None:
    p = sub.add_parser("inbox", help="live notification inbox")
    p.add_argument("url", help="ws://HOST:PORT/ws/notifications")
    p.add_argument("--token", help="default: CONFIDE_TOKEN")
    p.set_defaults(run=_run(lambda a: terminal.inbox(a.url, _token(a))))


def add_watch(sub: SubParsers) -> None:
    p = sub.add_parser("watch", help="live analytics of one stream")
    p.add_argument("stream", help="system, session:ID or fhe:NAME")
    p.add_argument("--key-id", help="the key of an fhe: stream's aggregates")
    p.add_argument(
        "--url",
        default=DEFAULT_ANALYTICS_URL,
        help=f"analytics endpoint (default {DEFAULT_ANALYTICS_URL})",
    )
    p.add_argument("--token", help="default: CONFIDE_TOKEN")
    p.set_defaults(run=_run(lambda a: terminal.watch(a.url, _token(a), a.stream, a.key_id)))


# --------------------------------------------------------------------------- fhe


def _analytics_url(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=DEFAULT_ANALYTICS_URL,
        help=f"analytics endpoint (default {DEFAULT_ANALYTICS_URL})",
    )


def add_fhe(sub: SubParsers) -> None:
    p = sub.add_parser(
        "fhe",
        help="encrypted computation: keys, encrypted contributions, decrypted aggregates",
        description="Keys are made and kept in a directory on this machine; the secret key "
        'never leaves it (docs/sdk.md, "Encrypted computation").',
    )
    fhe_sub = p.add_subparsers(dest="fhe_command", required=True, metavar="FHE_COMMAND")

    keygen = fhe_sub.add_parser(
        "keygen", help="generate a key set (public parts and the secret key) in a directory"
    )
    keygen.add_argument(
        "--preset",
        default="aggregation",
        choices=sorted(PRESETS),
        help="CKKS parameters (default aggregation; test is NOT secure)",
    )
    keygen.add_argument("--dir", required=True, metavar="KEYDIR", help="where to write the keys")
    keygen.add_argument("--force", action="store_true", help="replace a key set already there")
    keygen.set_defaults(run=lambda a: fhe_commands.keygen_command(a.dir, a.preset, force=a.force))

    upload = fhe_sub.add_parser(
        "upload", help="register the public key bundle (POST /api/fhe/keys; no secret key)"
    )
    upload.add_argument("--dir", required=True, metavar="KEYDIR")
    upload.add_argument(
        "--url", default=DEFAULT_HTTP_URL, help=f"server (default {DEFAULT_HTTP_URL})"
    )
    upload.add_argument("--token", help="the key owner's token (default: CONFIDE_TOKEN)")
    upload.add_argument("--label", help="a name for the key, shown to its owner")
    upload.add_argument(
        "--timeout",
        type=float,
        default=UPLOAD_TIMEOUT_S,
        help=f"seconds (default {UPLOAD_TIMEOUT_S:g})",
    )
    upload.set_defaults(
        run=lambda a: fhe_commands.upload_command(
            a.url, _token(a), a.dir, a.label, timeout=a.timeout
        )
    )

    submit = fhe_sub.add_parser(
        "submit", help="encrypt values under a key and contribute them to an fhe: stream"
    )
    submit.add_argument("stream", help="NAME or fhe:NAME")
    submit.add_argument("--dir", required=True, metavar="KEYDIR", help="public parts suffice")
    submit.add_argument(
        "--values", required=True, nargs="+", type=float, metavar="X", help="one per slot"
    )
    submit.add_argument("--key-id", help="default: the key in KEYDIR")
    _analytics_url(submit)
    submit.add_argument("--token", help="default: CONFIDE_TOKEN")
    submit.set_defaults(
        run=_run(
            lambda a: fhe_commands.submit_command(
                a.url, _token(a), a.stream, a.dir, a.values, a.key_id
            )
        )
    )

    watch = fhe_sub.add_parser(
        "watch", help="print a stream's aggregates under your key, decrypted here"
    )
    watch.add_argument("stream", help="NAME or fhe:NAME")
    watch.add_argument("--dir", required=True, metavar="KEYDIR", help="must hold the secret key")
    watch.add_argument(
        "--length",
        type=int,
        default=fhe_commands.DEFAULT_WATCH_LENGTH,
        metavar="N",
        help=f"slots to print (default {fhe_commands.DEFAULT_WATCH_LENGTH})",
    )
    watch.add_argument("--frames", type=int, metavar="N", help="exit after N aggregates")
    _analytics_url(watch)
    watch.add_argument("--token", help="the key owner's token (default: CONFIDE_TOKEN)")
    watch.set_defaults(
        run=_run(
            lambda a: fhe_commands.watch_command(
                a.url, _token(a), a.stream, a.dir, a.length, frames=a.frames
            )
        )
    )
    add_fhe_sessions(fhe_sub)


def add_fhe_sessions(fhe_sub: Any) -> None:
    """`confide fhe session-config` and `confide fhe features`."""
    config = fhe_sub.add_parser(
        "session-config", help="turn on encrypted insights for a chat session (therapist)"
    )
    config.add_argument("session", help="the session id")
    config.add_argument("--key-id", help="your registered key (or --dir)")
    config.add_argument("--dir", metavar="KEYDIR", help="take the key id from KEYDIR")
    config.add_argument("--model", default="mood-risk-v1", help="default mood-risk-v1")
    config.add_argument(
        "--url", default=DEFAULT_HTTP_URL, help=f"server (default {DEFAULT_HTTP_URL})"
    )
    config.add_argument("--token", help="default: CONFIDE_TOKEN")
    config.set_defaults(
        run=lambda a: fhe_sessions.session_config_command(
            a.url, _token(a), a.session, a.key_id, a.dir, a.model
        )
    )
    feats = fhe_sub.add_parser(
        "features", help="encrypt NAME=VALUE features for a key fetched from the server"
    )
    feats.add_argument("--key-id", required=True, help="the therapist's key")
    feats.add_argument("values", nargs="+", metavar="NAME=VALUE")
    feats.add_argument("--model", default="mood-risk-v1", help="default mood-risk-v1")
    feats.add_argument(
        "--url", default=DEFAULT_HTTP_URL, help=f"server (default {DEFAULT_HTTP_URL})"
    )
    feats.add_argument("--token", help="default: CONFIDE_TOKEN")
    feats.set_defaults(
        run=lambda a: fhe_sessions.features_command(
            a.url, _token(a), a.key_id, a.values, a.model
        )
    )


#: Subcommands, in help order; each adds its parser and sets `run`.
COMMANDS: tuple[Callable[[SubParsers], None], ...] = (
    add_token,
    add_notify,
    add_chat,
    add_inbox,
    add_watch,
    add_fhe,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="confide", description="Confide SDK command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connection events")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except ClientError as e:
        print(f"confide: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
