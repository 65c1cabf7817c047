"""The browser client against the real server: the gateway serves it, and headless Chromium
(Debian's `chromium`, driven by web/e2e/run.mjs with playwright-core) chats through it.

Needs `make install` (node_modules and web/dist) and /usr/bin/chromium (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from confide.client import ChatClient
from confide.client.sealed import open_body
from tests.integration.conftest import Server, make_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
#: The e2e scenarios' own limit (one browser at a time; each check waits up to 30 s).
SCENARIO_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def web_server(serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A short heartbeat: a page that goes offline notices within 2 × 2 s.
    srv = Server(make_settings(tmp_path_factory.mktemp("web"), heartbeat_s=2.0), serve_port)
    srv.deploy()
    try:
        _wait_routed(srv)
        yield srv
    finally:
        srv.stop()


def _wait_routed(server: Server, timeout_s: float = 60.0) -> None:
    """Until the proxy routes to the app (right after `serve.run` it may still answer 404)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.http, timeout=5) as http:
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the app is not routed"
            time.sleep(0.2)


def test_the_gateway_serves_the_client_and_the_demo_page(web_server: Server) -> None:
    assert (WEB / "dist" / "confide-client.js").is_file(), "web client not built: make install"
    with httpx.Client(base_url=web_server.http, timeout=10) as http:
        module = http.get("/static/confide-client.js")
        assert module.status_code == 200, module.text
        assert module.headers["content-type"].startswith("text/javascript")
        assert "export {" in module.text and "ConfideSocket" in module.text
        assert "useWebSocket" in module.text
        page = http.get("/")
        assert page.status_code == 200 and "/static/demo.js" in page.text
        assert http.get("/static/vendor/react.js").status_code == 200
        assert http.get("/static/../pyproject.toml").status_code == 404
        assert http.get("/static/nope.js").json()["error"]["code"] == "not_found"
        # The server has a configured secret: no development tokens.
        assert http.get("/api/dev").json() == {"dev_tokens": False}
        minted = http.post("/api/dev/token", json={"sub": "mallory", "role": "admin"})
        assert minted.status_code == 403


def _run(server: Server, scenario: str, tmp_path: Path, session: str = "", **env: str) -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed (.ci/run installs it)"
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    assert (WEB / "node_modules" / "playwright-core").is_dir(), "npm packages missing: make install"
    session = session or f"web-{uuid.uuid4().hex[:8]}"
    run_env = {
        **os.environ,
        "CONFIDE_HTTP": server.http,
        "CONFIDE_SESSION": session,
        "CONFIDE_TOKEN_ALICE": server.token("alice", role="therapist", sessions=[session]),
        "CONFIDE_TOKEN_BOB": server.token("bob", sessions=[session]),
        "CONFIDE_TOKEN_SERVICE": server.token("reminders", role="service"),
        "HOME": str(tmp_path),
        **env,
    }
    done = subprocess.run(
        [node, "e2e/run.mjs", scenario], cwd=WEB, env=run_env, capture_output=True, text=True,
        timeout=SCENARIO_TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, f"e2e {scenario} failed:\n{done.stdout}\n{done.stderr}"
    assert f"e2e {scenario}: ok" in done.stdout


async def test_two_pages_chat_end_to_end_encrypted(web_server: Server, tmp_path: Path) -> None:
    """The pages seal their messages; the server stores only ciphertext, and the Python SDK
    opens what the browsers sealed (the same format both ways)."""
    key, session = os.urandom(32), f"web-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_run, web_server, "chat", tmp_path, session,
                            CONFIDE_SESSION_KEY=base64.b64encode(key).decode())
    reader = ChatClient(web_server.ws(f"/ws/chat/{session}"),
                        web_server.token("carol", sessions=[session]))
    await reader.connect(timeout=30)
    try:
        history = await reader.request_history(timeout=30)
    finally:
        await reader.disconnect()
    stored = history["messages"]
    assert [m["encrypted"] for m in stored] == [True, True]
    assert all(set(m["body"]) == {"ciphertext", "alg", "key_id"} for m in stored)
    assert "alice" not in json.dumps([m["body"] for m in stored])
    texts = [open_body(key, session, m["body"])["text"] for m in stored]
    assert texts == ["hello from alice", "hi alice, bob here"]


def test_a_page_offline_sees_every_message_once_in_order(
    web_server: Server, tmp_path: Path
) -> None:
    _run(web_server, "offline", tmp_path)


def test_the_demo_chart_updates_and_the_inbox_reads(web_server: Server, tmp_path: Path) -> None:
    shot = tmp_path / "demo.png"
    _run(web_server, "chart", tmp_path, CONFIDE_SCREENSHOT=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("CONFIDE_UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "demo.png")
