"""Soak: Confide at a fraction of its measured capacity for N minutes, with reconnect churn,
sampling the resident memory (RSS) of every server process over time.

Not a test and not in CI: a long run that shows whether memory keeps growing once the
server has warmed up (target: under 5% growth after the warm-up, per process).

- The server is started as `make run` starts it (`python -m serve_app`, temporary data
  directory), in a session of its own (benchmarks/fanout.py's `Server`), and stopped at
  the end with every process it started.
- Capacity: the highest deliveries/s Confide sustained in benchmarks/results/fanout.json
  (or `--capacity`). The load is S sessions x 10 members x 10 messages/s per member (the
  per-connection rate limit is 20/s), S chosen so that deliveries/s offered are
  `--fraction` (default 0.5) of the capacity. Open loop, as in loadgen.py.
- Churn: every member closes and reconnects (a fresh `hello`, a new join) after a random
  lifetime (exponential, mean `--lifetime` s), so joins, leaves, presence and the
  audit trail keep working all along, not only fan-out.
- Every `--sample` s: the RSS of each process of the server's tree, by role (gateway
  replicas, host actors, FHE workers, HAProxy, the Serve controller and proxy, Ray's own
  processes), and the load's figures over that window (sent/s, deliveries/s, latency p50
  and p99, errors, closes, reconnects).
- Growth per process: the median of the last three samples against the median of the
  first three after the warm-up (`--warmup-minutes`, default a sixth of the run, at least
  one minute). Processes that restarted (a new pid) are listed, not compared.

Writes benchmarks/results/soak.{json,png} (`--name` picks another name) and prints the
growth table.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--fraction 0.5] [--capacity D]
        [--lifetime 60] [--sample 10] [--warmup-minutes W] [--name soak]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))

from fanout import Server, free_port, raise_nofile, start_server, wait_ready  # noqa: E402
from loadgen import Member, Recorder, Target, open_member, quantile_ms  # noqa: E402

MEMBERS = 10
RATE = 10.0
#: Growth after warm-up that passes (the issue's target).
TARGET_GROWTH = 0.05
#: The roles whose memory the soak is about; the rest are Ray's own processes.
ROLES = ("gateway", "host", "fhe-worker", "haproxy", "serve-controller", "serve-proxy")


def role_of(proc: psutil.Process) -> str:
    """What a process of the server's tree is, from its name and command line (Ray sets
    actor processes' titles to `ray::<Class>...`)."""
    try:
        name = proc.name()
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "gone"
    if "haproxy" in name or "haproxy" in cmd.split(" ")[0]:
        return "haproxy"
    for needle, role in (("ServeController", "serve-controller"),
                         ("ProxyActor", "serve-proxy"),
                         ("FheWorker", "fhe-worker"),
                         ("Gateway", "gateway"),
                         ("HostActor", "host"),
                         ("gcs_server", "ray-gcs"),
                         ("raylet", "ray-raylet"),
                         ("serve_app", "driver")):
        if needle in cmd:
            return role
    return f"other:{name}"


def capacity_from_fanout() -> tuple[float, str]:
    """The highest deliveries/s Confide reached in the last fan-out benchmark."""
    path = RESULTS / "fanout.json"
    data = json.loads(path.read_text())
    loads = data["servers"]["confide"]["loads"]
    best = max(loads.values(), key=lambda f: f.get("deliveries_per_s") or 0.0)
    return float(best["deliveries_per_s"]), f"{path.relative_to(ROOT)} ({best['load']}, " \
        f"{data['date']})"


@dataclass
class Window:
    """What the members saw since the last sample."""

    sent: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    reconnects: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)


class Soak:
    def __init__(self, target: Target, sessions: int, t_end: float, lifetime: float) -> None:
        self.target = target
        self.sessions = sessions
        self.t_end = t_end
        self.lifetime = lifetime
        self.window = Window()
        self.online = 0

    def take(self) -> Window:
        w, self.window = self.window, Window()
        return w

    async def slot(self, user: str, session: str) -> None:
        """One member: connect, send and read for a random lifetime, close, again."""
        k = 0
        while time.perf_counter() < self.t_end:
            rec = Recorder()
            member = await open_member(self.target, user, session, rec)
            self.window.connect_failures.update(rec.connect_failures)
            if member is None:
                await asyncio.sleep(1.0)
                continue
            self.window.connects += 1
            self.online += 1
            stop = min(self.t_end, time.perf_counter() + random.expovariate(1 / self.lifetime))
            reader = asyncio.create_task(self.read(member))
            try:
                k = await self.send(member, stop, k)
            finally:
                self.online -= 1
                await member.ws.close()
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            if stop < self.t_end:
                self.window.reconnects += 1

    async def send(self, member: Member, stop: float, k: int) -> int:
        period = 1.0 / RATE
        due = time.perf_counter() + random.random() * period
        while due < stop:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = {"type": "message", "id": f"{member.user}-{k}",
                     "body": {"t": time.perf_counter(), "from": member.user}}
            try:
                await member.ws.send(json.dumps(frame))
            except ConnectionClosed:
                return k
            self.window.sent += 1
            k += 1
            due += period
        return k

    async def read(self, member: Member) -> None:
        ws = member.ws
        try:
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message":
                    self.window.received += 1
                    self.window.latencies.append(now - frame["body"]["t"])
                elif kind == "error":
                    self.window.errors[str(frame.get("code"))] += 1
        except ConnectionClosed:
            pass
        if ws.close_code not in (None, 1000):
            self.window.closes[str(ws.close_code)] += 1


def sample_rss(server: Server) -> dict[str, int]:
    """RSS of every process of the server's tree, keyed `role:pid`."""
    out: dict[str, int] = {}
    for p in server.processes():
        try:
            out[f"{role_of(p)}:{p.pid}"] = p.memory_info().rss
        except psutil.Error:
            continue
    return out


def window_figures(w: Window, seconds: float, online: int) -> dict[str, Any]:
    lat = sorted(w.latencies)
    return {"sent_per_s": w.sent / seconds, "deliveries_per_s": w.received / seconds,
            "latency_p50_ms": quantile_ms(lat, 0.5), "latency_p99_ms": quantile_ms(lat, 0.99),
            "errors": dict(w.errors), "closes": dict(w.closes), "connects": w.connects,
            "reconnects": w.reconnects, "connect_failures": dict(w.connect_failures),
            "online": online}


async def drive(server: Server, soak: Soak, sample_s: float, started: float,
                samples: list[dict[str, Any]]) -> None:
    slots = [asyncio.create_task(soak.slot(f"soak-u{s}-{m}", f"soak-s{s}"))
             for s in range(soak.sessions) for m in range(MEMBERS)]
    last = time.perf_counter()
    try:
        while time.perf_counter() < soak.t_end:
            await asyncio.sleep(min(sample_s, max(0.0, soak.t_end - time.perf_counter())))
            now = time.perf_counter()
            figures = window_figures(soak.take(), now - last, soak.online)
            last = now
            rss = await asyncio.to_thread(sample_rss, server)
            elapsed = now - started
            samples.append({"t_s": elapsed, "rss": rss, "load": figures,
                            "machine_load_avg_1m": os.getloadavg()[0]})
            total = sum(v for k, v in rss.items() if k.split(":")[0] in ROLES)
            sys.stderr.write(
                f"\r[soak] {elapsed / 60:5.1f} min  online={figures['online']:4d}  "
                f"deliveries/s={figures['deliveries_per_s']:8.0f}  "
                f"p99={figures['latency_p99_ms'] or 0:7.1f} ms  "
                f"rss(server roles)={total / 2**20:7.1f} MiB   ")
            sys.stderr.flush()
    finally:
        await asyncio.gather(*slots, return_exceptions=True)
        sys.stderr.write("\n")


def growth(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """Per process: median RSS of the first three samples after warm-up against the last
    three; processes not present in both are listed as restarted or gone."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 4:
        return {"error": "too few samples after the warm-up"}
    head, tail = after[:3], after[-3:]
    keys = set().union(*(s["rss"] for s in after))
    per: dict[str, Any] = {}
    roles: dict[str, list[float]] = {}
    unmatched: list[str] = []
    for key in sorted(keys):
        a = [s["rss"][key] for s in head if key in s["rss"]]
        b = [s["rss"][key] for s in tail if key in s["rss"]]
        if not a or not b:
            unmatched.append(key)
            continue
        base, end = statistics.median(a), statistics.median(b)
        g = end / base - 1
        per[key] = {"after_warmup_mib": base / 2**20, "end_mib": end / 2**20, "growth": g}
        roles.setdefault(key.split(":")[0], [0.0, 0.0])
        roles[key.split(":")[0]][0] += base
        roles[key.split(":")[0]][1] += end
    by_role = {r: {"after_warmup_mib": a / 2**20, "end_mib": b / 2**20, "growth": b / a - 1}
               for r, (a, b) in roles.items()}
    watched = {k: v for k, v in per.items() if k.split(":")[0] in ROLES}
    worst = max(watched.items(), key=lambda kv: kv[1]["growth"]) if watched else None
    return {"per_process": per, "by_role": by_role, "restarted_or_gone": unmatched,
            "worst": {"process": worst[0], "growth": worst[1]["growth"]} if worst else None,
            "target": TARGET_GROWTH,
            "passed": bool(watched) and all(v["growth"] < TARGET_GROWTH
                                            for v in watched.values())}


def plot(summary: dict[str, Any], path: Path) -> None:
    """Three panels: RSS of the server's processes (MiB), the same relative to the end of
    the warm-up (with the 5% target), and the load (deliveries/s, p99)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = summary["samples"]
    warm = summary["params"]["warmup_s"]
    minutes = [s["t_s"] / 60 for s in samples]
    fig, (ax, rel, lx) = plt.subplots(3, 1, figsize=(11, 10), sharex=True,
                                      gridspec_kw={"height_ratios": [2.2, 2.2, 1.2]})
    keys = sorted(k for k in set().union(*(s["rss"] for s in samples))
                  if k.split(":")[0] in ROLES)
    for key in keys:
        ys = [s["rss"].get(key, float("nan")) / 2**20 for s in samples]
        ax.plot(minutes, ys, label=key, linewidth=1.4)
        base = [s["rss"][key] for s in samples if s["t_s"] >= warm and key in s["rss"]][:3]
        if base:
            b = statistics.median(base)
            rel.plot(minutes, [100 * (s["rss"][key] / b - 1) if key in s["rss"] else float("nan")
                               for s in samples], label=key, linewidth=1.2)
    rel.axhline(100 * TARGET_GROWTH, color="black", linestyle="--", linewidth=1,
                label="target +5%")
    rel.axhline(0, color="grey", linewidth=0.6)
    for a in (ax, rel, lx):
        a.axvspan(0, warm / 60, color="0.9")
    ax.set_ylabel("RSS (MiB)")
    rel.set_ylabel("RSS vs. end of warm-up (%)")
    g = summary["growth"]
    verdict = "passed" if g.get("passed") else "not passed"
    ax.set_title(f"Confide soak: {summary['params']['load']} "
                 f"({summary['params']['offered_deliveries_per_s']:,.0f} deliveries/s offered), "
                 f"{summary['params']['minutes']:g} min (shaded: warm-up); growth < 5%: {verdict}")
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    rel.legend(fontsize=7, ncol=3, loc="upper left")
    lx.plot(minutes, [s["load"]["deliveries_per_s"] for s in samples], label="deliveries/s")
    lx.set_ylabel("deliveries/s")
    rx = lx.twinx()
    rx.plot(minutes, [s["load"]["latency_p99_ms"] or float("nan") for s in samples],
            color="tab:red", label="p99 latency (ms)")
    rx.set_ylabel("p99 (ms)", color="tab:red")
    lx.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(g: dict[str, Any]) -> str:
    if "error" in g:
        return g["error"]
    lines = ["| process | after warm-up (MiB) | end (MiB) | growth |",
             "| --- | ---: | ---: | ---: |"]
    for key, v in sorted(g["per_process"].items()):
        if key.split(":")[0] in ROLES:
            lines.append(f"| {key} | {v['after_warmup_mib']:.1f} | {v['end_mib']:.1f} | "
                         f"{100 * v['growth']:+.2f}% |")
    for role, v in sorted(g["by_role"].items()):
        lines.append(f"| all {role} | {v['after_warmup_mib']:.1f} | {v['end_mib']:.1f} | "
                     f"{100 * v['growth']:+.2f}% |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--fraction", type=float, default=0.5, help="of the measured capacity")
    p.add_argument("--capacity", type=float,
                   help="deliveries/s (default: the best of results/fanout.json)")
    p.add_argument("--lifetime", type=float, default=60.0,
                   help="mean seconds a member stays connected before it reconnects")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--warmup-minutes", type=float)
    p.add_argument("--name", default="soak",
                   help="results go to benchmarks/results/<name>.{json,png}")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.capacity:
        capacity, source = args.capacity, "--capacity"
    else:
        capacity, source = capacity_from_fanout()
    sessions = max(1, round(args.fraction * capacity / (MEMBERS * MEMBERS * RATE)))
    offered = sessions * MEMBERS * MEMBERS * RATE
    duration = args.minutes * 60
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None
                     else max(1.0, args.minutes / 6))
    nofile = raise_nofile()
    started_at = datetime.now(timezone.utc)
    samples: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="confide-soak-") as tmp:
        port = free_port()
        server, hello = start_server("confide", port, Path(tmp))
        target = Target("confide", port, hello, server.memory, server.cpu_seconds, server.scan)
        try:
            print(f"[soak] starting Confide on port {port}; {sessions}x{MEMBERS}x{RATE:g} "
                  f"({offered:,.0f} deliveries/s = {args.fraction:g} x {capacity:,.0f} from "
                  f"{source}) for {args.minutes:g} min", file=sys.stderr, flush=True)
            result["ready_s"] = wait_ready(server, target, timeout=300)
            t0 = time.perf_counter()
            soak = Soak(target, sessions, t0 + duration, args.lifetime)
            asyncio.run(drive(server, soak, args.sample, t0, samples))
        except Exception as e:  # noqa: BLE001 - recorded with what was sampled so far
            result["error"] = f"{type(e).__name__}: {e}"
            print(f"[soak] FAILED: {result['error']}", file=sys.stderr)
        finally:
            result["stop"] = server.stop()
    summary = {
        "date": started_at.isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "params": {"minutes": args.minutes, "fraction": args.fraction, "capacity": capacity,
                   "capacity_source": source, "load": f"{sessions}x{MEMBERS}x{RATE:g}",
                   "offered_deliveries_per_s": offered, "lifetime_s": args.lifetime,
                   "sample_s": args.sample, "warmup_s": warmup_s, "rlimit_nofile": nofile},
        "result": result,
        "growth": growth(samples, warmup_s),
        "samples": samples,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=1))
    if samples:
        plot(summary, RESULTS / f"{args.name}.png")
    print(table(summary["growth"]))
    print(f"passed (every server process < {100 * TARGET_GROWTH:g}% after warm-up): "
          f"{summary['growth'].get('passed')}")
    print(f"written: benchmarks/results/{args.name}.json, {args.name}.png")


if __name__ == "__main__":
    main()
