"""Chat fan-out: Confide against a bare `websockets` hub and the same hub in Ray Serve.

One load generator (this process, loadgen.py) drives three servers in turn, each in a
subprocess of its own session, so its whole process tree (Ray's GCS, raylet, workers,
HAProxy included) is measured and cleaned up:

1. bare: hubs.py, one asyncio process, in memory, `websockets.broadcast`;
2. serve: serve_hub.py, the same hub logic as one Ray Serve replica, in Confide's Serve
   mode (gateway/serve_mode.py);
3. confide: `python -m serve_app`, as `make run` starts it (temporary data directory).

Per server: idle memory per connection (N idle connections, USS summed over the process
tree, before and after) and their connect rate; then each load (S sessions × M members ×
R messages/s per member, open loop, see loadgen.py) with delivered ratio, deliveries/s,
latency p50/p99/p999 and connect rate; a second connect rate right after the saturated
load. Every figure is also given as a ratio: Confide / bare, Confide / Serve hub and
Serve hub / bare. The generator shares the machine's cores with the servers: its CPU use
during each load is recorded (a generator at 100% of a core caps every server's figures).

Servers on Ray get a free port for Serve's HAProxy metrics frontend, which binds 9101
even with its metrics off (a second Serve on the machine would keep HAProxy from
starting); a server that fails is recorded with its error and the others still run.
Writes benchmarks/results/fanout.{json,md,png} (fanout_report.py) and prints the table.

    .venv/bin/python benchmarks/fanout.py [--quick] [--only bare,serve,confide]
        [--duration S] [--idle N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))

from fanout_report import LABELS, SERVERS, write  # noqa: E402  (benchmarks/ is on sys.path)
from loadgen import (  # noqa: E402
    CONNECT_CONCURRENCY,
    Load,
    Progress,
    Recorder,
    Target,
    Timing,
    measure_connect,
    open_member,
    run_idle,
    run_load,
)

SECRET = "fanout-benchmark-secret-0123456789abcdef"
STEADY = Load(10, 10, 10)
SATURATED = Load(40, 10, 12)
FULL_LOADS = (Load(10, 10, 2), Load(10, 10, 5), STEADY, Load(20, 10, 10), SATURATED)
QUICK_LOADS = (STEADY, SATURATED)


class Server:
    """A server subprocess in a session of its own, and every process it starts."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.seen: dict[int, float] = {}  # pid -> create time, of every process seen
        self.tree: list[psutil.Process] = []  # as of the last scan

    def processes(self) -> list[psutil.Process]:
        """The subprocess, its descendants, and anything else left in its session."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
        except psutil.NoSuchProcess:
            procs = {}
        for p in psutil.process_iter():
            try:
                if p.pid not in procs and os.getsid(p.pid) == self.proc.pid:
                    procs[p.pid] = p
            except (OSError, psutil.Error):
                continue
        for p in procs.values():
            try:
                self.seen.setdefault(p.pid, p.create_time())
            except psutil.Error:
                continue
        self.tree = list(procs.values())
        return self.tree

    def scan(self) -> None:
        self.processes()

    def memory(self) -> int:
        """USS (RSS where USS is unavailable) summed over the process tree."""
        total = 0
        for p in self.processes():
            try:
                total += p.memory_full_info().uss
            except psutil.AccessDenied:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    def cpu_seconds(self) -> float:
        """CPU time of the tree as of the last scan (cheap: no scan of every process)."""
        total = 0.0
        for p in self.tree:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 90.0) -> dict[str, Any]:
        """SIGINT and wait (Confide and the Serve hub shut Ray down), then SIGKILL."""
        self.processes()
        how = "exited"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
                how = "sigint"
            except subprocess.TimeoutExpired:
                how = "sigkill"
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        deadline = time.monotonic() + 15
        while (left := self._left()) and time.monotonic() < deadline:
            time.sleep(0.5)
        for p in left:
            p.kill()
        return {"stopped_by": how, "exit_code": self.proc.returncode,
                "processes_seen": len(self.seen), "killed_leftovers": [p.pid for p in left]}

    def _left(self) -> list[psutil.Process]:
        left = []
        for pid, created in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except psutil.Error:
                continue
        return left


def free_port() -> int:
    """A free port whose +404 (Serve's HAProxy stats port) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + 404 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 404))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port")


def clean_env(ray: bool = False, **extra: str) -> dict[str, str]:
    """This environment without CONFIDE_*/RAY_* settings, plus `extra`.

    For the Ray servers, Serve's HAProxy gets a free metrics port: its `prometheus`
    frontend binds 9101 even with its metrics disabled, so a second Serve on this machine
    (a test run, say) would make HAProxy fail to start.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONFIDE_", "RAY_")) and k != "PYTHONPATH"}
    if ray:
        env |= {"RAY_AUTH_MODE": "disabled", "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}
    return env | extra


def start_server(name: str, port: int, work: Path) -> tuple[Server, Callable[[str, str], Any]]:
    """The server `name` on `port`, and the hello its members send."""
    py = sys.executable
    log = work / f"{name}.log"
    if name == "bare":
        server = Server(name, [py, str(BENCH / "hubs.py"), "--port", str(port)], clean_env(), log)
    elif name == "serve":
        server = Server(name, [py, str(BENCH / "serve_hub.py"), "--port", str(port)],
                        clean_env(ray=True), log)
    else:
        env = clean_env(ray=True, CONFIDE_PORT=str(port),
                        CONFIDE_DATA_DIR=str(work / "confide-data"),
                        CONFIDE_JWT_SECRET=SECRET, CONFIDE_RAY_NAMESPACE="bench")
        server = Server(name, [py, "-m", "serve_app"], env, log)
        from confide.auth import mint_token

        def hello(user: str, session: str) -> dict[str, Any]:
            return {"type": "hello", "token": mint_token(SECRET, user, sessions=[session]),
                    "client": "fanout-bench/1"}

        return server, hello
    return server, lambda user, _session: {"type": "hello", "user": user}


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return bool(json.loads(r.read()).get("ready"))
    except (OSError, ValueError):
        return False


def wait_ready(server: Server, target: Target, timeout: float) -> float:
    """Seconds until the server answers a hello (and, for Confide, /healthz is ready)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n"
                               + server.log_tail())
        if (server.name != "confide" or healthy(target.port)) and asyncio.run(probe(target)):
            return time.monotonic() - start
        time.sleep(1.0)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")


async def probe(target: Target) -> bool:
    try:
        member = await asyncio.wait_for(open_member(target, "probe", "probe", Recorder()), 10)
    except asyncio.TimeoutError:
        return False
    if member is None:
        return False
    await member.ws.close()
    return True


async def bench_phases(target: Target, loads: tuple[Load, ...], timing: Timing,
                       idle: int) -> dict[str, Any]:
    progress = Progress(LABELS[target.name])
    ticker = asyncio.create_task(progress.run())
    try:
        result: dict[str, Any] = {"idle": await run_idle(target, idle, "idle", progress),
                                  "loads": {}}
        for i, load in enumerate(loads):
            result["loads"][load.name] = await run_load(target, load, timing, f"L{i}", progress)
            if load == SATURATED:
                result["connect_after_saturated"] = await measure_connect(
                    target, load.sessions * load.members, "post", progress)
            await asyncio.sleep(1.0)
        return result
    finally:
        ticker.cancel()
        progress.render()
        sys.stderr.write("\n")


def bench_server(name: str, loads: tuple[Load, ...], timing: Timing, idle: int,
                 work: Path) -> dict[str, Any]:
    port = free_port()
    server, hello = start_server(name, port, work)
    target = Target(name, port, hello, server.memory, server.cpu_seconds, server.scan)
    result: dict[str, Any] = {"port": port}
    try:
        print(f"{LABELS[name]}: starting on port {port}", file=sys.stderr, flush=True)
        result["ready_s"] = wait_ready(server, target, timeout=300)
        result["processes"] = len(server.processes())
        result |= asyncio.run(bench_phases(target, loads, timing, idle))
    except Exception as e:  # noqa: BLE001  (recorded; the other servers still run)
        result["error"] = f"{type(e).__name__}: {e}"
        print(f"{LABELS[name]}: FAILED: {result['error']}", file=sys.stderr, flush=True)
    finally:
        result["stop"] = stopped = server.stop()
        print(f"{LABELS[name]}: stopped ({stopped})", file=sys.stderr, flush=True)
        if stopped["killed_leftovers"] or "error" in result:
            print(server.log_tail(), file=sys.stderr)
    return result


def raise_nofile() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="steady and saturated loads only, ~4 s each, 300 idle connections")
    parser.add_argument("--only", default=",".join(SERVERS),
                        help="comma-separated subset of " + ",".join(SERVERS))
    parser.add_argument("--duration", type=float, help="measured seconds per load")
    parser.add_argument("--idle", type=int, help="idle connections for the memory figure")
    args = parser.parse_args()
    args.only = [s for s in args.only.split(",") if s]
    if unknown := set(args.only) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    loads = QUICK_LOADS if args.quick else FULL_LOADS
    timing = Timing(warmup_s=1.0 if args.quick else 2.0,
                    duration_s=args.duration or (4.0 if args.quick else 10.0), drain_s=5.0)
    idle = args.idle or (300 if args.quick else 2000)
    nofile = raise_nofile()
    started = datetime.now(timezone.utc)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="confide-fanout-") as tmp:
        for name in [s for s in SERVERS if s in args.only]:
            results[name] = bench_server(name, loads, timing, idle, Path(tmp))
    summary = {
        "date": started.isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "mode": "quick" if args.quick else "full",
        "params": {"loads": [vars(load) | {"name": load.name} for load in loads],
                   "warmup_s": timing.warmup_s, "duration_s": timing.duration_s,
                   "drain_s": timing.drain_s, "idle_connections": idle,
                   "connect_concurrency": CONNECT_CONCURRENCY, "rlimit_nofile": nofile,
                   "servers": args.only},
        "servers": results,
        "generator_cpu_percent_saturated": {
            n: r.get("loads", {}).get(SATURATED.name, {}).get("generator_cpu_percent")
            for n, r in results.items()},
    }
    print("\n" + write(RESULTS, summary, loads, idle, SATURATED))
    print("written: benchmarks/results/fanout.json, fanout.md, fanout.png")

if __name__ == "__main__":
    main()
