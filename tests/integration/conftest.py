"""One Ray instance and one Serve instance per test session; apps deployed per module."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Ray's token authentication is on, as in every launch path, with a throwaway token per
# test session (Ray reads RAY_AUTH_TOKEN first; every process of this Ray inherits it).
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import ray
from ray import serve
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from actors.directory import host_name, kill_hosts
from confide.auth import mint_token
from confide.config import Settings
from gateway.serve_mode import apply, runtime_dir, serve_env

SECRET = "integration-test-secret-0123456789abcdef"
# Actors read the JWT secret from their environment, never from their arguments.
os.environ["CONFIDE_JWT_SECRET"] = SECRET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def serve_port() -> Iterator[int]:
    """Serve in Confide's own mode (gateway/serve_mode.py): HAProxy on `port`, routing to
    the gateway replicas' direct-ingress ports."""
    port = free_port()
    env = serve_env(Settings(port=port, jwt_secret=SECRET), stats_port=free_port())
    apply(env)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             namespace="confide-tests", runtime_env={"env_vars": env})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(runtime_dir(env), ignore_errors=True)


@dataclass
class Server:
    settings: Settings
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def token(self, sub: str, role: str = "client", sessions: list[str] | None = None,
              ttl_s: float = 3600, **extra: Any) -> str:
        return mint_token(SECRET, sub, role=role, sessions=sessions, ttl_s=ttl_s, extra=extra)

    def deploy(self) -> None:
        from serve_app import build_app

        serve.run(build_app(self.settings), name="confide", route_prefix="/")
        wait_for_websockets(self.port)

    def stop(self) -> None:
        """The whole server goes away: gateway replicas and host actors."""
        serve.delete("confide")
        kill_hosts(self.settings)
        wait_for_hosts_gone(self.settings)


def wait_for_websockets(port: int, timeout: float = 60.0) -> None:
    """Serve reports the app running before HAProxy routes to its replica: meanwhile
    HAProxy's fallback (Serve's proxy) answers WebSocket upgrades with 500. Wait until an
    upgrade is accepted."""
    async def probe() -> None:
        while True:
            try:
                async with connect(f"ws://127.0.0.1:{port}/ws/notifications"):
                    return
            except (InvalidHandshake, OSError):
                await asyncio.sleep(0.2)

    # In a thread of its own: deploy() is also called from async tests (a running loop).
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(probe(), timeout))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def wait_for_hosts_gone(settings: Settings, timeout: float = 30.0) -> None:
    """`ray.kill` is asynchronous: until the GCS has the host actors dead, a new
    deployment's get-or-create (actors/directory.py) would get the dying ones. Wait until
    no host name of this deployment resolves."""
    deadline = time.monotonic() + timeout
    for k in range(settings.hosts):
        while True:
            try:
                ray.get_actor(host_name(k), namespace=settings.ray_namespace)
            except ValueError:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"host actor {k} still alive {timeout} s after its kill")
            time.sleep(0.05)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "jwt_secret": SECRET,
        "ray_namespace": f"t-{uuid.uuid4().hex[:8]}",
        "hosts": 2,
        "hello_timeout_s": 2.0,
        "connections_per_replica": 1000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def server(serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(make_settings(tmp_path_factory.mktemp("data")), serve_port)
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fresh(serve_port: int, tmp_path: Path) -> Iterator[Server]:
    """A server of its own, for tests that kill or restart it."""
    srv = Server(make_settings(tmp_path), serve_port)
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store backend in turn: "" (SQLite in the data dir) or a new PostgreSQL schema."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def recoverable(serve_port: int, tmp_path: Path, store_url: str) -> Iterator[Server]:
    """A server of its own, for recovery tests, over each store backend. They send at full
    speed before and after a restart: a burst the rate limiter never reaches (with the
    default 40, a restart quicker than about 0.5 s made it refuse a frame)."""
    srv = Server(make_settings(tmp_path, store=store_url, rate_burst=1000), serve_port)
    srv.deploy()
    try:
        yield srv
    finally:
        srv.stop()
