"""Where the local cluster keeps its files and what its nodes and clients run with: Ray's
token authentication, the environment of every node, and the Serve config it deploys
(cluster/local.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from confide.config import Settings
from gateway import serve_mode
from gateway.serve_mode import free_port, serve_env

ROOT = Path(__file__).resolve().parents[1]
#: Worker nodes: (name, CPUs, GPUs). Node k (1-based) is WORKERS[k - 1].
WORKERS = [("worker-1", 1, 0), ("worker-2", 1, 1)]
GATEWAY_RESOURCE = "confide_gateway"


def data_dir() -> Path:
    return Path(os.environ.get("CONFIDE_DATA_DIR", "./data")).resolve()


def ray_auth_env() -> dict[str, str]:
    """Ray's token authentication for every node and every client of this cluster."""
    return serve_mode.ray_auth_env(data_dir() / "cluster")


def client_env(state: dict[str, Any]) -> dict[str, str]:
    """What a driver or `serve` command needs to talk to this cluster."""
    return os.environ | state["auth_env"] | {"RAY_ADDRESS": state["gcs"]}


def node_env(state: dict[str, Any], settings: Settings) -> dict[str, str]:
    """The environment of every `ray start`: Serve mode, token auth, Confide's settings."""
    env = dict(os.environ)
    env.update(serve_env(settings, stats_port=free_port()))
    env.update(state["auth_env"])
    env.update({
        "CONFIDE_DATA_DIR": str(data_dir()),
        "CONFIDE_PORT": str(settings.port),
        "CONFIDE_HOST": settings.host,
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        # a dead node is declared dead (and its actors restarted elsewhere) after about
        # 3 s instead of Ray's default of about 15 s
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    })
    if state.get("store"):
        env["CONFIDE_STORE"] = state["store"]
    return env


def deploy_config(settings: Settings) -> dict[str, Any]:
    """cluster/serve.yaml for this machine: its port, one HAProxy, gateways on the head."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "cluster" / "serve.yaml").read_text())
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {"host": settings.host, "port": settings.port}
    for dep in config["applications"][0]["deployments"]:
        if dep["name"] == "Gateway":
            dep["ray_actor_options"]["resources"] = {GATEWAY_RESOURCE: 1}
    return config
