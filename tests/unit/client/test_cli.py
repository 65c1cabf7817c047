"""The `confide` CLI: tokens, notify over HTTP, renderers, and a scripted chat session."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from confide.client import terminal
from confide.client.cli import main
from tests.unit.client.conftest import ChatServer, json_api, running

SECRET = "cli-test-secret-0123456789abcdef0123"


def claims(token: str, secret: str = SECRET) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    return decoded


def test_token_with_secret(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "token",
            "--sub",
            "tara",
            "--role",
            "therapist",
            "--sessions",
            "s1",
            "s2",
            "--ttl",
            "60",
            "--secret",
            SECRET,
        ]
    )
    token = capsys.readouterr().out.strip()
    assert code == 0
    decoded = claims(token)
    assert decoded["sub"] == "tara" and decoded["role"] == "therapist"
    assert decoded["sessions"] == ["s1", "s2"] and decoded["exp"] - decoded["iat"] == 60


def test_token_uses_the_configured_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dev_secret = "dev-secret-the-server-wrote-0123456789"
    (tmp_path / "dev-jwt-secret").write_text(dev_secret + "\n")
    monkeypatch.setenv("CONFIDE_DATA_DIR", str(tmp_path))
    assert main(["token", "--sub", "alice"]) == 0
    assert claims(capsys.readouterr().out.strip(), dev_secret)["role"] == "client"
    monkeypatch.setenv("CONFIDE_JWT_SECRET", SECRET)  # wins over the dev secret file
    assert main(["token", "--sub", "alice"]) == 0
    assert claims(capsys.readouterr().out.strip())["sub"] == "alice"
    assert main(["token", "--sub", "bob", "--secret", "x" * 32]) == 0  # wins over both
    assert claims(capsys.readouterr().out.strip(), "x" * 32)["sub"] == "bob"


def test_token_reads_the_default_data_dir(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev-jwt-secret").write_text(SECRET)
    monkeypatch.chdir(tmp_path)
    assert main(["token", "--sub", "alice"]) == 0
    assert claims(capsys.readouterr().out.strip())["sub"] == "alice"


NO_SECRET_COMMANDS = [
    ["token", "--sub", "alice"],
    # With no token, notify mints a service token: it needs the secret before any request.
    ["notify", "alice", "--title", "t", "--body", "b", "--url", "http://127.0.0.1:9"],
]


@pytest.mark.parametrize("command", NO_SECRET_COMMANDS)
def test_no_secret_anywhere_fails_clearly_and_creates_nothing(
    command: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the default ./data holds no secret either
    data = tmp_path / "server-data"
    for data_dir in (None, data):
        if data_dir is not None:
            monkeypatch.setenv("CONFIDE_DATA_DIR", str(data_dir))
        with pytest.raises(SystemExit) as exited:
            main(command)
        message = str(exited.value.code)
        assert "no signing secret" in message and "--secret" in message
        assert "CONFIDE_JWT_SECRET" in message and "dev-jwt-secret" in message
    data.mkdir()
    (data / "dev-jwt-secret").write_text("  \n")  # empty: as good as none
    with pytest.raises(SystemExit, match="no signing secret"):
        main(command)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["dev-jwt-secret", "server-data"]


REQUESTS: list[tuple[str, dict[str, str], bytes]] = []


def _notifications(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
    if json.loads(raw)["user"] == "nobody":
        return 403, {"error": {"code": "forbidden", "message": "no"}}
    return 202, {"id": "n1", "state": "queued"}


@pytest.fixture
def api() -> Iterator[str]:
    REQUESTS.clear()
    with json_api(_notifications, REQUESTS) as url:
        yield url


def test_notify_posts_with_bearer_and_idempotency_key(
    api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "notify",
            "alice",
            "--title",
            "Hi",
            "--body",
            "See you",
            "--kind",
            "reminder",
            "--data",
            '{"at": 5}',
            "--url",
            api,
            "--token",
            "svc-token",
            "--idempotency-key",
            "k-1",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"id": "n1", "state": "queued"}
    path, headers, raw = REQUESTS[-1]
    body = json.loads(raw)
    assert path == "/api/notifications"
    assert headers["Authorization"] == "Bearer svc-token" and headers["Idempotency-Key"] == "k-1"
    assert body == {
        "user": "alice",
        "kind": "reminder",
        "title": "Hi",
        "body": "See you",
        "data": {"at": 5},
    }


def test_notify_mints_a_service_token_and_reports_errors(
    api: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONFIDE_TOKEN", raising=False)
    code = main(
        ["notify", "nobody", "--title", "t", "--body", "b", "--url", api, "--secret", SECRET]
    )
    assert code == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "forbidden"
    token = REQUESTS[-1][1]["Authorization"].removeprefix("Bearer ")
    assert claims(token)["role"] == "service"


def test_render_chat_lines() -> None:
    message = {"type": "message", "offset": 3, "sender": "bob", "body": {"text": "hi"}}
    assert terminal.render_chat(message) == "[3] bob: hi"
    assert terminal.render_chat({**message, "encrypted": True}) == "[3] bob: <encrypted>"
    presence = {"type": "presence", "event": "join", "user": "bob", "members": [{}, {}]}
    assert terminal.render_chat(presence) == "* bob joined (2 here)"
    assert terminal.render_chat({"type": "status", "user": "bob", "status": "typing"}) == (
        "* bob is typing"
    )
    assert terminal.render_chat({"type": "state", "state": "reconnecting"}) == "* reconnecting..."
    close = {"type": "close", "code": 4410, "reason": "session ended", "reconnect": False}
    assert terminal.render_chat(close) == "* closed (4410 session ended)"
    assert terminal.render_chat({"type": "state", "state": "open"}) is None


def test_render_metrics_table() -> None:
    frame = {
        "type": "metrics",
        "stream": "system",
        "ts": 0.0,
        "data": {"connections": 3, "latency": {"p50": 0.002}},
    }
    screen = terminal.render_metrics(frame)
    assert screen.startswith(terminal.CLEAR_SCREEN)
    assert "connections  3" in screen and "latency.p50  0.002" in screen


async def test_chat_terminal_sends_lines_and_prints_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat = ChatServer()
    chat.store({"text": "earlier"})
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\n/history 5\n/quit\n"))
    out = io.StringIO()
    async with running(chat.handler) as base:
        code = await terminal.chat(f"{base}/ws/chat/s1", "t", out=out)
    lines = out.getvalue().splitlines()
    assert code == 0
    assert "[2] alice: hello there" in lines and "[1] bob: earlier" in lines
    assert chat.log[1]["body"] == {"text": "hello there"}
