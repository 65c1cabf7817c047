"""cluster/environment.py: the deployed config, the node environment, the token."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from ray.serve.schema import ServeDeploySchema

from cluster.environment import GATEWAY_RESOURCE, WORKERS, deploy_config, node_env, ray_auth_env
from confide.config import Settings
from gateway.serve_mode import runtime_dir


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONFIDE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)


def test_deploy_config_for_one_machine() -> None:
    config = deploy_config(Settings(port=18999))
    ServeDeploySchema.model_validate(config)
    assert config["proxy_location"] == "HeadOnly"
    assert config["http_options"] == {"host": "127.0.0.1", "port": 18999}
    deps = {d["name"]: d for d in config["applications"][0]["deployments"]}
    assert deps["Gateway"]["ray_actor_options"]["resources"] == {GATEWAY_RESOURCE: 1}
    assert deps["FheWorker"]["ray_actor_options"]["num_gpus"] == 0.5  # worker 2's GPU
    gpus = [g for _, _, g in WORKERS]
    assert gpus == [0, 1]


def test_token_auth_for_every_node(tmp_path: Path) -> None:
    env = ray_auth_env()
    assert env["RAY_AUTH_MODE"] == "token"
    token = Path(env["RAY_AUTH_TOKEN_PATH"])
    assert token.parent.parent == tmp_path and len(token.read_text()) == 64
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert ray_auth_env() == env  # the same token on every call


def test_node_env_has_serve_mode_auth_and_settings(tmp_path: Path) -> None:
    state = {"auth_env": ray_auth_env(), "store": "postgresql://c@127.0.0.1:5/c"}
    env = node_env(state, Settings(port=18999))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["CONFIDE_DATA_DIR"] == str(tmp_path) and env["CONFIDE_PORT"] == "18999"
    assert env["CONFIDE_STORE"] == state["store"]
    shutil.rmtree(runtime_dir(env))  # the HAProxy directory serve_env made for this test
