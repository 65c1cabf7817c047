"""FHE workers' placement comes from settings; host actors spread softly over nodes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from actors.fhe_worker import fhe_worker_options
from confide.config import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_fhe_workers_on_cpu_by_default() -> None:
    actor = fhe_worker_options(Settings())["ray_actor_options"]
    assert "num_gpus" not in actor and "resources" not in actor


def test_fhe_workers_gpu_share_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIDE_FHE_WORKER_GPUS", "0.5")
    monkeypatch.setenv("CONFIDE_FHE_WORKER_RESOURCES", '{"fhe": 1}')
    actor = fhe_worker_options(Settings())["ray_actor_options"]
    assert actor["num_gpus"] == 0.5
    assert actor["resources"] == {"fhe": 1.0}


def test_no_import_time_gpu_detection() -> None:
    """Nothing in the app's modules asks Ray for its resources while building options."""
    for path in [ROOT / "serve_app.py", ROOT / "actors" / "fhe_worker.py"]:
        tree = ast.parse(path.read_text())
        calls = {n.func.attr for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & {"cluster_resources", "available_resources", "get_gpu_ids"}, path


def test_hosts_spread_softly() -> None:
    tree = ast.parse((ROOT / "actors" / "directory.py").read_text())
    strategies = [k.value.value for k in ast.walk(tree)
                  if isinstance(k, ast.keyword) and k.arg == "scheduling_strategy"
                  and isinstance(k.value, ast.Constant)]
    assert strategies == ["SPREAD"]
