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
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confide.config import Settings  # noqa: E402
from gateway.serve_mode import free_port, serve_env  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
SERVE = str(Path(sys.executable).with_name("serve"))
#: Worker nodes: (name, CPUs, GPUs). Node k (1-based) is WORKERS[k - 1].
WORKERS = [("worker-1", 1, 0), ("worker-2", 1, 1)]
GATEWAY_RESOURCE = "confide_gateway"


def data_dir() -> Path:
    return Path(os.environ.get("CONFIDE_DATA_DIR", "./data")).resolve()


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


def _secret_file(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def ray_auth_env() -> dict[str, str]:
    """Ray's token authentication for every node and every client of this cluster."""
    env = {"RAY_AUTH_MODE": "token"}
    if not os.environ.get("RAY_AUTH_TOKEN"):
        env["RAY_AUTH_TOKEN_PATH"] = str(_secret_file(data_dir() / "cluster" / "ray-auth-token"))
    return env


def client_env(state: dict[str, Any]) -> dict[str, str]:
    """What a driver or `serve` command needs to talk to this cluster."""
    return os.environ | state["auth_env"] | {"RAY_ADDRESS": state["gcs"]}


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


def _start_node(name: str, args: list[str], env: dict[str, str], logs: Path) -> dict[str, Any]:
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - the node keeps it open
    proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats",
                             *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=ROOT)
    return {"name": name, "pid": proc.pid, "alive": True}


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


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(1.0)


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

    _wait(f"Ray at {state['gcs']}", connect, 300)
    try:
        yield
    finally:
        ray.shutdown()


def deploy_config(settings: Settings) -> dict[str, Any]:
    """cluster/serve.yaml for this machine: its port, one HAProxy, gateways on the head."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "cluster" / "serve.yaml").read_text())
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {"host": settings.host, "port": settings.port}
    for dep in config["applications"][0]["deployments"]:
        if dep["name"] == "Gateway":
            dep["ray_actor_options"]["resources"] = {GATEWAY_RESOURCE: 1}
    return config


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
    _wait(f"/healthz on port {settings.port}", lambda: healthy(settings.port), timeout)


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
    state["nodes"].append(_start_node("head", [
        "--head", f"--port={gcs_port}", "--num-cpus=2", "--num-gpus=0",
        f"--resources={head_resources}", f"--temp-dir={temp}", "--include-dashboard=false",
        f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
    ], env, logs))
    save_state(state)
    # `ray start --block` logs that it blocks once its node is up
    _wait("the head node", lambda: b"--block" in (logs / "head.log").read_bytes(), 180)
    with _driver(state):
        # one node at a time: on a small machine, a raylet that registers later than
        # 30 s after its `ray start` makes that start fail
        for k, (name, cpus, gpus) in enumerate(WORKERS, start=2):
            resources = json.dumps({f"confide_node_{name}": 1})
            args = [f"--address={state['gcs']}", f"--num-cpus={cpus}", f"--num-gpus={gpus}",
                    f"--resources={resources}"]
            for attempt in range(3):  # a start that lost the 30 s race is started again
                node = _start_node(name, [
                    *args, f"--dashboard-agent-listen-port={free_port()}",
                    f"--metrics-export-port={free_port()}"], env, logs)
                state["nodes"] = [n for n in state["nodes"] if n["name"] != name] + [node]
                save_state(state)
                if _wait(f"{k} live nodes", lambda k=k, pid=node["pid"]: len(_alive_nodes()) == k
                         or ("exited" if not _running(pid) else False), 240) is True:
                    break
                _stop_tree(node["pid"])
                print(f"{name} did not start (attempt {attempt + 1}); again", flush=True)
            else:
                raise SystemExit(f"{name} did not start")
    deploy(state, timeout)
    print(f"Confide is up on a 3-node local Ray cluster: http://{settings.host}:"
          f"{settings.port}/healthz\n  store: {state['store'] or settings.store_url()}\n"
          f"  Ray: {state['gcs']} (token auth; RAY_AUTH_TOKEN_PATH in "
          f"{state_path()})", flush=True)


def _tree(pid: int) -> list[psutil.Process]:
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


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_tree(pid: int) -> None:
    """SIGKILL a node's process and its descendants (what a failed start left)."""
    procs = _tree(pid)
    _signal_all(procs, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


def kill_node(index: int) -> None:
    """SIGKILL of a worker node's raylet and every process on it, the way a machine dies."""
    state = load_state()
    node = state["nodes"][index]
    if index == 0:
        raise SystemExit("node 0 is the head: kill a worker node (1 or 2)")
    procs = _tree(node["pid"])
    _signal_all(procs, signal.SIGSTOP)  # freeze first: nothing reacts to its siblings' death
    _signal_all(procs, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
    node["alive"] = False
    save_state(state)
    print(f"killed {node['name']}: {len(procs)} processes", flush=True)


def down() -> None:
    """Stop everything `up` started: the nodes (workers first), then PostgreSQL."""
    state = load_state()
    for node in reversed(state["nodes"]):
        procs = _tree(node["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node["pid"], signal.SIGTERM)  # `ray start --block` stops its node
        _, left = psutil.wait_procs(procs, timeout=30)
        _signal_all(left, signal.SIGKILL)
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
