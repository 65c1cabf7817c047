"""cluster/local.py's pure parts: the deployed config, the node environment, the token."""

from __future__ import annotations

import importlib.util
import shutil
import stat
from pathlib import Path
from types import ModuleType

import pytest
from ray.serve.schema import ServeDeploySchema

from confide.config import Settings
from gateway.serve_mode import runtime_dir

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("CONFIDE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    spec = importlib.util.spec_from_file_location("cluster_local", ROOT / "cluster" / "local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deploy_config_for_one_machine(local: ModuleType) -> None:
    config = local.deploy_config(Settings(port=18999))
    ServeDeploySchema.model_validate(config)
    assert config["proxy_location"] == "HeadOnly"
    assert config["http_options"] == {"host": "127.0.0.1", "port": 18999}
    deps = {d["name"]: d for d in config["applications"][0]["deployments"]}
    assert deps["Gateway"]["ray_actor_options"]["resources"] == {local.GATEWAY_RESOURCE: 1}
    assert deps["FheWorker"]["ray_actor_options"]["num_gpus"] == 0.5  # worker 2's GPU
    gpus = [g for _, _, g in local.WORKERS]
    assert gpus == [0, 1]


def test_token_auth_for_every_node(local: ModuleType, tmp_path: Path) -> None:
    env = local.ray_auth_env()
    assert env["RAY_AUTH_MODE"] == "token"
    token = Path(env["RAY_AUTH_TOKEN_PATH"])
    assert token.parent.parent == tmp_path and len(token.read_text()) == 64
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert local.ray_auth_env() == env  # the same token on every call


def test_node_env_has_serve_mode_auth_and_settings(local: ModuleType, tmp_path: Path) -> None:
    state = {"auth_env": local.ray_auth_env(), "store": "postgresql://c@127.0.0.1:5/c"}
    env = local.node_env(state, Settings(port=18999))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["CONFIDE_DATA_DIR"] == str(tmp_path) and env["CONFIDE_PORT"] == "18999"
    assert env["CONFIDE_STORE"] == state["store"]
    shutil.rmtree(runtime_dir(env))  # the HAProxy directory serve_env made for this test
