"""A three-node Ray cluster on one machine, for trying Confide on a cluster and for drills.

    python cluster/local.py up              # `make cluster-up`
    python cluster/local.py down            # `make cluster-down`
    python cluster/local.py kill-node 1     # `make cluster-kill-node NODE=1`
    python cluster/local.py where           # JSON: nodes, and the node of every host actor
    python cluster/local.py kill-host 0     # kill host actor 0 (Ray restarts it)
    python cluster/local.py kill-replica Gateway   # kill one replica (Serve replaces it)
    python cluster/local.py deploy [REVISION]      # apply serve.yaml again (rolling)
    python cluster/local.py restart-postgres

`up` starts PostgreSQL (scripts/postgres.sh, data under CONFIDE_DATA_DIR/postgres) when
the store supports it, else SQLite under CONFIDE_DATA_DIR; then a head and two worker
nodes, each a `ray start --block` process in its own process group with its own
resources: the head (2 CPUs, the `confide_gateway` resource, so the gateway replicas and
HAProxy stay on it: every node here shares one address), worker 1 (1 CPU) and worker 2
(1 CPU, 1 GPU: the resource the FHE workers ask for, standing in for the GPU node). Every
node runs with Confide's Serve mode and Ray's token authentication (a token generated into
CONFIDE_DATA_DIR/cluster/ray-auth-token, mode 0600, or RAY_AUTH_TOKEN if set). Then it
deploys cluster/serve.yaml with `serve deploy` and returns once /healthz answers 200 on
CONFIDE_PORT. The PIDs are kept in CONFIDE_DATA_DIR/cluster/state.json: `down` and
`kill-node` act on those processes and their descendants only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.environment import (
    GATEWAY_RESOURCE,
    ROOT,
    WORKERS,
    client_env,
    data_dir,
    deploy_config,
    node_env,
    ray_auth_env,
)
from cluster.processes import (
    load_state,
    running,
    save_state,
    signal_all,
    start_node,
    state_path,
    stop_tree,
    tree,
    wait_for,
)
from confide.config import Settings
from gateway.serve_mode import free_port

SERVE = str(Path(sys.executable).with_name("serve"))


def store_supports_postgres() -> bool:
    return (ROOT / "scripts" / "postgres.sh").exists() and (
        importlib.util.find_spec("confide.store.postgres") is not None)


def start_postgres(state: dict[str, Any]) -> str | None:
    if os.environ.get("CONFIDE_STORE"):
        return os.environ["CONFIDE_STORE"]
    if not store_supports_postgres():
        print("PostgreSQL store not available here: SQLite under CONFIDE_DATA_DIR", flush=True)
        return None
    pg_dir = data_dir() / "postgres"
    port = state.get("pg_port") or free_port()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start", str(pg_dir),
                          str(port)], check=True, capture_output=True, text=True)
    state["postgres"] = {"dir": str(pg_dir), "port": port}
    state["pg_port"] = port
    url = out.stdout.strip().splitlines()[-1]
    return url


def _alive_nodes() -> dict[str, str]:
    """Node name -> node id, of the live nodes (this process is a driver of the cluster)."""
    import ray

    return {name[13:]: n["NodeID"] for n in ray.nodes() if n["Alive"]
            for name in n["Resources"] if name.startswith("confide_node_")}


@contextlib.contextmanager
def _driver(state: dict[str, Any]) -> Any:
    """This process as a driver of the cluster (with its token), for a while."""
    os.environ.update(state["auth_env"])  # before Ray is imported: it reads them then
    import ray

    def connect() -> bool:
        try:
            ray.init(address=state["gcs"], logging_level="ERROR", log_to_driver=False)
        except ConnectionError:
            ray.shutdown()
            return False
        return True

    wait_for(f"Ray at {state['gcs']}", connect, 300)
    try:
        yield
    finally:
        ray.shutdown()


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        return bool(r.status == 200)


def deploy(state: dict[str, Any], timeout: float = 600, revision: str | None = None) -> None:
    """Apply cluster/serve.yaml; a new `revision` changes the config (a rolling redeploy:
    Serve replaces every replica, new ones first)."""
    settings = Settings()
    config = deploy_config(settings)
    if revision is not None:
        config["applications"][0]["runtime_env"]["env_vars"]["CLUSTER_REVISION"] = revision
    path = data_dir() / "cluster" / "serve.deploy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # `serve run CONFIG --non-blocking` applies the config like `serve deploy`, through
    # the GCS instead of the dashboard (no dashboard here: it costs a core at start).
    subprocess.run([SERVE, "run", str(path), "--non-blocking", "--address", state["gcs"]],
                   env=client_env(state), check=True, cwd=ROOT, timeout=300)
    wait_for(f"/healthz on port {settings.port}", lambda: healthy(settings.port), timeout)


def up(timeout: float = 600) -> None:
    if state_path().exists() and any(
            n["alive"] and psutil.pid_exists(n["pid"]) for n in load_state()["nodes"]):
        raise SystemExit("a local cluster is already running: `make cluster-down` first")
    settings = Settings()
    settings.signing_secret()  # the dev secret, when none is configured, before nodes read it
    old = json.loads(state_path().read_text()) if state_path().exists() else {}
    state: dict[str, Any] = {"auth_env": ray_auth_env(), "nodes": [],
                             "pg_port": old.get("pg_port")}
    state["store"] = start_postgres(state)
    save_state(state)
    logs = data_dir() / "cluster" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    temp = tempfile.mkdtemp(prefix="cfray-", dir="/tmp")  # short: Ray's socket paths
    gcs_port = free_port()
    env = node_env(state, settings)
    state.update(temp_dir=temp, gcs=f"127.0.0.1:{gcs_port}",
                 haproxy_dir=env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"], port=settings.port)
    head_resources = json.dumps({GATEWAY_RESOURCE: 100, "confide_node_head": 1})
    state["nodes"].append(start_node("head", [
        "--head", f"--port={gcs_port}", "--num-cpus=2", "--num-gpus=0",
        f"--resources={head_resources}", f"--temp-dir={temp}", "--include-dashboard=false",
        f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
    ], env, logs))
    save_state(state)
    # `ray start --block` logs that it blocks once its node is up
    wait_for("the head node", lambda: b"--block" in (logs / "head.log").read_bytes(), 180)
    with _driver(state):
        # one node at a time: on a small machine, a raylet that registers later than
        # 30 s after its `ray start` makes that start fail
        for k, (name, cpus, gpus) in enumerate(WORKERS, start=2):
            resources = json.dumps({f"confide_node_{name}": 1})
            args = [f"--address={state['gcs']}", f"--num-cpus={cpus}", f"--num-gpus={gpus}",
                    f"--resources={resources}"]
            for attempt in range(3):  # a start that lost the 30 s race is started again
                node = start_node(name, [
                    *args, f"--dashboard-agent-listen-port={free_port()}",
                    f"--metrics-export-port={free_port()}"], env, logs)
                state["nodes"] = [n for n in state["nodes"] if n["name"] != name] + [node]
                save_state(state)
                if wait_for(f"{k} live nodes", lambda k=k, pid=node["pid"]: len(_alive_nodes()) == k
                           or ("exited" if not running(pid) else False), 240) is True:
                    break
                stop_tree(node["pid"])
                print(f"{name} did not start (attempt {attempt + 1}); again", flush=True)
            else:
                raise SystemExit(f"{name} did not start")
    deploy(state, timeout)
    print(f"Confide is up on a 3-node local Ray cluster: http://{settings.host}:"
          f"{settings.port}/healthz\n  store: {state['store'] or settings.store_url()}\n"
          f"  Ray: {state['gcs']} (token auth; RAY_AUTH_TOKEN_PATH in "
          f"{state_path()})", flush=True)


def kill_node(index: int) -> None:
    """SIGKILL of a worker node's raylet and every process on it, the way a machine dies."""
    state = load_state()
    node = state["nodes"][index]
    if index == 0:
        raise SystemExit("node 0 is the head: kill a worker node (1 or 2)")
    procs = tree(node["pid"])
    signal_all(procs, signal.SIGSTOP)  # freeze first: nothing reacts to its siblings' death
    signal_all(procs, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
    node["alive"] = False
    save_state(state)
    print(f"killed {node['name']}: {len(procs)} processes", flush=True)


def down() -> None:
    """Stop everything `up` started: the nodes (workers first), then PostgreSQL."""
    state = load_state()
    for node in reversed(state["nodes"]):
        procs = tree(node["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node["pid"], signal.SIGTERM)  # `ray start --block` stops its node
        _, left = psutil.wait_procs(procs, timeout=30)
        signal_all(left, signal.SIGKILL)
        psutil.wait_procs(left, timeout=10)
        node["alive"] = False
    save_state(state)
    if state.get("postgres"):
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop",
                        state["postgres"]["dir"]], check=False)
    for key in ("haproxy_dir", "temp_dir"):
        if state.get(key):
            shutil.rmtree(state[key], ignore_errors=True)
    print("local cluster stopped", flush=True)


def where() -> dict[str, Any]:
    """Live nodes, and the node of every host actor and Serve replica of the deployment."""
    state = load_state()
    settings = Settings()
    code = f"""
import json, ray
from ray._private import state
ray.init(logging_level="ERROR")
names = {{n["NodeID"]: [k for k in n["Resources"] if k.startswith("confide_node_")][0][13:]
         for n in ray.nodes() if n["Alive"]}}
hosts = {{a["Name"]: names.get(a["Address"]["NodeID"]) for a in state.actors().values()
         if a["Name"].startswith("confide-host-") and a["State"] == "ALIVE"
         and a.get("RayNamespace", {settings.ray_namespace!r}) == {settings.ray_namespace!r}}}
replicas = {{a["Name"]: names.get(a["Address"]["NodeID"]) for a in state.actors().values()
            if a["Name"].startswith("SERVE_REPLICA::") and a["State"] == "ALIVE"}}
print(json.dumps({{"nodes": sorted(names.values()), "hosts": hosts, "replicas": replicas}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=client_env(state),
                         capture_output=True, text=True, timeout=120, check=True)
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def kill_host(index: int) -> None:
    state = load_state()
    settings = Settings()
    code = (f"import ray; ray.init(logging_level='ERROR'); ray.kill(ray.get_actor("
            f"'confide-host-{index}', namespace={settings.ray_namespace!r}), no_restart=False)")
    subprocess.run([sys.executable, "-c", code], env=client_env(state), check=True, timeout=120)


def kill_replica(deployment: str) -> None:
    """Kill one Serve replica of `deployment` (Serve starts a replacement)."""
    state = load_state()
    code = f"""
import ray
from ray._private import state
ray.init(logging_level="ERROR")
[name] = sorted(a["Name"] for a in state.actors().values() if a["State"] == "ALIVE"
                and a["Name"].startswith("SERVE_REPLICA::confide#{deployment}#"))[:1]
ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
print(name)
"""
    subprocess.run([sys.executable, "-c", code], env=client_env(state), check=True, timeout=120)


def restart_postgres() -> None:
    """Stop PostgreSQL and start it again on the same data and port."""
    state = load_state()
    pg = state.get("postgres")
    if not pg:
        raise SystemExit("this cluster runs without PostgreSQL")
    script = str(ROOT / "scripts" / "postgres.sh")
    subprocess.run(["bash", script, "stop", pg["dir"]], check=True, timeout=120)
    subprocess.run(["bash", script, "start", pg["dir"], str(pg["port"])], check=True,
                   timeout=300, capture_output=True)


def main(argv: list[str]) -> None:
    command = argv[0] if argv else "help"
    if command == "up":
        up()
    elif command == "down":
        down()
    elif command == "kill-node":
        kill_node(int(argv[1]))
    elif command == "deploy":
        deploy(load_state(), revision=argv[1] if len(argv) > 1 else None)
    elif command == "kill-replica":
        kill_replica(argv[1])
    elif command == "restart-postgres":
        restart_postgres()
    elif command == "where":
        print(json.dumps(where()), flush=True)
    elif command == "kill-host":
        kill_host(int(argv[1]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
