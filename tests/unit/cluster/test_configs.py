"""cluster/: every file parses; serve.yaml is valid for `serve deploy` and imports; the
RayService has what KubeRay requires; the launcher, Prometheus and Grafana files hold."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[3]
CLUSTER = ROOT / "cluster"


def load(name: str) -> Any:
    return yaml.safe_load((CLUSTER / name).read_text())


@pytest.mark.parametrize("path", sorted(CLUSTER.glob("*.y*ml")), ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text()), dict)


def test_serve_yaml_validates_against_serve_schema() -> None:
    config = ServeDeploySchema.model_validate(load("serve.yaml"))
    [app] = config.applications
    assert app.route_prefix == "/"
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Gateway", "FheWorker"}
    fhe = deployments["FheWorker"]
    assert fhe.autoscaling_config["max_replicas"] > fhe.autoscaling_config["min_replicas"]
    assert fhe.ray_actor_options.num_gpus == 0.5  # the GPU worker group
    assert deployments["Gateway"].ray_actor_options.num_cpus > 0


def test_serve_yaml_import_path_is_the_app() -> None:
    config = ServeDeploySchema.model_validate(load("serve.yaml"))
    module, _, attr = config.applications[0].import_path.partition(":")
    app = getattr(importlib.import_module(module), attr)
    assert isinstance(app, Application)
    gateway = app._bound_deployment
    config, workers = gateway.init_args
    assert gateway.name == "Gateway" and workers._bound_deployment.name == "FheWorker"
    assert "jwt_secret" not in config  # no secrets in deployment arguments


def test_serve_yaml_sets_no_secrets() -> None:
    text = (CLUSTER / "serve.yaml").read_text()
    assert not re.search(r"JWT_SECRET|RAY_AUTH_TOKEN|postgresql://", text.split("applications:")[1])


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    containers = spec["template"]["spec"]["containers"]
    assert containers and all(c.get("name") and c.get("image") for c in containers)
    return list(containers)


def test_kuberay_rayservice_has_the_required_fields() -> None:
    doc = load("kuberay.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"].startswith("2.")
    assert cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert isinstance(g["rayStartParams"], dict)
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        _containers(g)
    gpu = _containers(groups["gpu"])[0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] >= 1
    for group in [head, groups["cpu"], groups["gpu"]]:
        for c in _containers(group):
            env = {e["name"]: e for e in c["env"]}
            for name in ("CONFIDE_JWT_SECRET", "CONFIDE_STORE"):
                assert "secretKeyRef" in env[name]["valueFrom"], name
                assert "value" not in env[name]
            assert env["RAY_SERVE_ENABLE_HA_PROXY"]["value"] == "1"
    for group in [head, groups["cpu"]]:
        probe = _containers(group)[0]["readinessProbe"]["httpGet"]
        assert probe["path"] == "/healthz"


def test_kuberay_serve_config_is_serve_yaml() -> None:
    """serveConfigV2 (a string) is a valid Serve config with serve.yaml's application."""
    embedded = yaml.safe_load(load("kuberay.yaml")["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(embedded)
    assert embedded == load("serve.yaml")


def test_launcher_config() -> None:
    doc = load("launcher.yaml")
    assert doc["cluster_name"] and doc["provider"]["type"]
    types = doc["available_node_types"]
    assert doc["head_node_type"] in types
    assert types["gpu"]["resources"]["GPU"] >= 1
    starts = doc["head_start_ray_commands"] + doc["worker_start_ray_commands"]
    started = [c for c in starts if "ray start" in c]
    assert len(started) == 2
    assert all("RAY_AUTH_MODE=token" in c and "CONFIDE_JWT_SECRET_FILE" in c for c in started)
    assert "~/.ray/auth_token" in doc["file_mounts"]


def test_prometheus_scrapes_ray_metrics() -> None:
    doc = load("prometheus.yml")
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert {"ray", "kuberay"} <= set(jobs)
    for job in ("ray", "kuberay"):
        keep = jobs[job]["metric_relabel_configs"][0]
        assert re.fullmatch(keep["regex"], "ray_confide_chat_messages_total")
        assert re.fullmatch(keep["regex"], "ray_serve_deployment_replica_healthy")


def test_grafana_dashboard_covers_confide_and_serve() -> None:
    doc = json.loads((CLUSTER / "grafana-dashboard.json").read_text())
    assert doc["title"] and doc["uid"]
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert any("ray_confide_" in e for e in exprs)
    assert any("ray_serve_" in e for e in exprs)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
