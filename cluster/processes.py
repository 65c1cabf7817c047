"""The local cluster's processes (cluster/local.py): the state file that records their PIDs,
starting a node, waiting for a condition, and finding and signalling a node's processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from cluster.environment import ROOT, data_dir

RAY = str(Path(sys.executable).with_name("ray"))


def state_path() -> Path:
    return data_dir() / "cluster" / "state.json"


def load_state() -> dict[str, Any]:
    path = state_path()
    if not path.exists():
        raise SystemExit(f"no local cluster recorded in {path}")
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def save_state(state: dict[str, Any]) -> None:
    state_path().parent.mkdir(parents=True, exist_ok=True)
    state_path().write_text(json.dumps(state, indent=2))


def start_node(name: str, args: list[str], env: dict[str, str], logs: Path) -> dict[str, Any]:
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - the node keeps it open
    proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats",
                             *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=ROOT)
    return {"name": name, "pid": proc.pid, "alive": True}


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(1.0)


def tree(pid: int) -> list[psutil.Process]:
    """A node's processes: its `ray start --block` process, all its descendants (GCS,
    raylet, agents, every worker process, HAProxy), and whatever is left in its process
    group (a child whose parent died is re-parented, but keeps its group)."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        found = {p.pid: p for p in [root, *root.children(recursive=True)]}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if p.pid not in found and os.getpgid(p.pid) == pid:
                found[p.pid] = p
                found.update((c.pid, c) for c in p.children(recursive=True))
    return list(found.values())


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_tree(pid: int) -> None:
    """SIGKILL a node's process and its descendants (what a failed start left)."""
    procs = tree(pid)
    signal_all(procs, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)


def signal_all(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
