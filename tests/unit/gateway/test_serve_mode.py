"""The Serve mode's environment (gateway/serve_mode.py)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from confide.config import Settings
from gateway.serve_mode import (
    REPLICA_PORT_BLOCK,
    fallback_ports,
    ray_auth_env,
    replica_ports,
    runtime_dir,
    serve_env,
)


def test_replica_ports_are_a_block_of_their_own_below_the_grpc_range() -> None:
    for port in (8000, 8001, 8499, 8500, 65535, 1):
        low, high = replica_ports(port)
        assert low >= 30000 and high < 40000 and high - low + 1 == REPLICA_PORT_BLOCK
    blocks = {replica_ports(p) for p in range(8000, 8500)}
    assert len(blocks) == 500  # neighbouring CONFIDE_PORTs never share replica ports


def test_the_environment_names_the_mode_and_keeps_haproxy_files_short() -> None:
    env = serve_env(Settings(port=8123, jwt_secret="x" * 32))
    try:
        assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        assert env["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"
        low, high = replica_ports(8123)
        assert (env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"],
                env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) == (str(low), str(high))
        assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] != env["RAY_SERVE_HAPROXY_STATS_PORT"]
        # HAProxy refuses an admin socket path over 97 bytes (Serve adds a 40-char hash).
        assert len(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]) + 41 <= 97
        assert runtime_dir(env).is_dir()
    finally:
        shutil.rmtree(runtime_dir(env), ignore_errors=True)


def test_serve_proxy_ports_are_a_pair_of_their_own_outside_the_replica_blocks() -> None:
    # HAProxy falls back to Serve's proxy while no replica is up: another Confide's proxy
    # there (Serve's default 8500 is one per machine) would answer this Confide's clients.
    for port in (8000, 8001, 8499, 8500, 65535, 1):
        http, grpc = fallback_ports(port)
        assert 29000 <= http < grpc < 30000
    pairs = [fallback_ports(p) for p in range(8000, 8500)]
    assert len({p for pair in pairs for p in pair}) == 1000
    env = serve_env(Settings(port=8123, jwt_secret="x" * 32))
    try:
        assert (env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"],
                env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"]) == tuple(
                    str(p) for p in fallback_ports(8123))
    finally:
        shutil.rmtree(runtime_dir(env), ignore_errors=True)


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A machine with no Ray token anywhere (a fresh one): HOME is an empty directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    return tmp_path


def test_a_fresh_machine_gets_a_token_of_its_own_kept_for_the_next_start(no_token: Path) -> None:
    env = ray_auth_env(no_token / "data")
    token = Path(env["RAY_AUTH_TOKEN_PATH"])
    assert env["RAY_AUTH_MODE"] == "token" and token.parent == no_token / "data"
    assert len(token.read_text()) == 64 and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert ray_auth_env(no_token / "data") == env  # the same token next time


def test_a_token_ray_can_find_is_left_to_ray(
    no_token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home_token = no_token / "home" / ".ray" / "auth_token"
    home_token.parent.mkdir(parents=True)
    home_token.write_text("a" * 64)
    assert ray_auth_env(no_token / "data") == {"RAY_AUTH_MODE": "token"}
    home_token.unlink()
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(no_token / "elsewhere"))
    assert ray_auth_env(no_token / "data") == {"RAY_AUTH_MODE": "token"}
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "b" * 64)
    assert ray_auth_env(no_token / "data") == {"RAY_AUTH_MODE": "token"}
    assert not (no_token / "data").exists()
