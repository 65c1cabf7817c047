"""The README's run command (`make run`: `python -m serve_app`) on a fresh machine: no
Ray token anywhere (HOME empty), no JWT secret, no data. It starts Ray with token
authentication on, serves /healthz and a WebSocket, and stops everything on Ctrl-C.

This starts a Ray of its own (the product's, as a user would), beside the session's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from confide.tokens import mint_token
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
READY_S = 240.0
STOP_S = 60.0


def fresh_env(home: Path, data: Path, port: int) -> dict[str, str]:
    """This process's environment less anything of Ray or Confide (the session's Serve
    mode, token and secret), on a new HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CONFIDE_"))}
    return env | {"HOME": str(home), "CONFIDE_DATA_DIR": str(data),
                  "CONFIDE_PORT": str(port), "RAY_USAGE_STATS_ENABLED": "0"}


def wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run command exited before it was ready"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json().get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("not ready in time")


async def hello(port: int, token: str) -> dict[str, object]:
    async with connect(f"ws://127.0.0.1:{port}/ws/notifications") as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        frame: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 30))
        return frame


def test_run_command_on_a_fresh_machine(tmp_path: Path) -> None:
    home, data, port = tmp_path / "home", tmp_path / "data", free_port()
    home.mkdir()
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "serve_app"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env=fresh_env(home, data, port),
                            start_new_session=True)
    try:
        wait_ready(proc, port)
        token_file = data / "ray-auth-token"  # Ray's token, made once, owner-only
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert not (home / ".ray").exists()
        secret = (data / "dev-jwt-secret").read_text().strip()
        welcome = asyncio.run(hello(port, mint_token(secret, "alice", ttl_s=60)))
        assert welcome["type"] == "welcome" and welcome["user"] == "alice"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(STOP_S) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert b"stopping Ray" in (tmp_path / "run.log").read_bytes()
