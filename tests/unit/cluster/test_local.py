"""cluster/local.py: it loads by its path, as `python cluster/local.py` runs it, with its
helpers from cluster/environment.py and cluster/processes.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_loads_by_path_and_prints_its_usage_for_no_command() -> None:
    spec = importlib.util.spec_from_file_location("cluster_local", ROOT / "cluster" / "local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as usage:
        module.main([])
    assert usage.value.code == module.__doc__ and "kill-node" in str(usage.value.code)
