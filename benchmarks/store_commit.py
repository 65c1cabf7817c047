"""Group-commit append throughput and latency: PostgreSQL store against SQLite, same run.

Each configuration appends chat messages in batches, as a host's GroupCommitter does (one
`append_messages` call, one transaction, per batch), spread over 16 sessions, and reports
messages/s and the batch commit latency (p50/p99). "2 writers" runs two stores at once,
as two host actors on one database do, each writing its own sessions. A read figure pages
100 messages with `messages_after`, as a resume does.

PostgreSQL: `--postgres-url`, else a throwaway server (scripts/postgres.sh) in a temp dir.
Results: benchmarks/results/store_commit.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from confide.store import Store, open_store
from confide.store.base import SessionRecord, StoredMessage

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SESSIONS = 16
BODY = {"text": "x" * 200}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Writer:
    """Appends batches to its own sessions, keeping their offsets."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.sessions = [f"{prefix}-{i}" for i in range(SESSIONS)]
        self.offsets = dict.fromkeys(self.sessions, 0)
        for sid in self.sessions:
            store.create_session(SessionRecord(sid, "ep", time.time()))
        self.turn = 0

    def batch(self, size: int) -> list[StoredMessage]:
        out = []
        for _ in range(size):
            sid = self.sessions[self.turn % SESSIONS]
            self.turn += 1
            self.offsets[sid] += 1
            off = self.offsets[sid]
            out.append(StoredMessage(sid, off, "ep", f"m{off}", "alice", time.time(), BODY,
                                     False))
        return out

    def run(self, size: int, seconds: float, latencies: list[float]) -> int:
        written = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msgs = self.batch(size)
            t = time.perf_counter()
            self.store.append_messages(msgs, 100_000)
            latencies.append((time.perf_counter() - t) * 1000)
            written += len(msgs)
        return written


def measure(make: Callable[[], Store], size: int, writers: int, seconds: float) -> dict[str, Any]:
    stores = [make() for _ in range(writers)]
    ws = [Writer(s, f"w{i}-{uuid.uuid4().hex[:6]}") for i, s in enumerate(stores)]
    for w in ws:  # warm-up: connections, prepared statements, pages
        w.run(size, 0.3, [])
    lat: list[list[float]] = [[] for _ in ws]
    counts = [0] * writers
    t0 = time.perf_counter()

    def go(i: int) -> None:
        counts[i] = ws[i].run(size, seconds, lat[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for lst in lat for x in lst]
    read = []
    for _ in range(200):
        sid = ws[0].sessions[0]
        t = time.perf_counter()
        stores[0].messages_after(sid, 0, 10**9, 100)
        read.append((time.perf_counter() - t) * 1000)
    for s in stores:
        s.close()
    return {
        "batch": size, "writers": writers, "messages": sum(counts),
        "msgs_per_s": sum(counts) / elapsed,
        "commit_p50_ms": statistics.median(flat), "commit_p99_ms": pct(flat, 0.99),
        "read100_p50_ms": statistics.median(read),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--postgres-url", default="")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="confide-bench-"))
    tmp.chmod(0o755)
    pg_data = tmp / "pg"
    url = args.postgres_url
    if not url:
        out = subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "start", str(pg_data),
                              str(free_port())], check=True, capture_output=True, text=True)
        url = out.stdout.strip().splitlines()[-1]
    with psycopg.connect(url) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    try:
        results: list[dict[str, Any]] = []
        for size, writers in [(1, 1), (8, 1), (64, 1), (512, 1), (64, 2)]:
            for backend in ("sqlite", "postgresql"):
                def make(backend: str = backend) -> Store:
                    if backend == "sqlite":
                        return open_store(f"sqlite:///{tmp / 'bench.db'}")
                    return open_store(url)
                r = measure(make, size, writers, args.seconds)
                r["backend"] = backend
                results.append(r)
                print(json.dumps(r))
    finally:
        if not args.postgres_url:
            subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "stop", str(pg_data)],
                           check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
            "postgres": version, "seconds": args.seconds, "sessions": SESSIONS,
            "body_bytes": len(json.dumps(BODY))}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "store_commit.json").write_text(json.dumps({"meta": meta, "results": results},
                                                          indent=1))
    rows = ["| batch × writers | SQLite msgs/s | PostgreSQL msgs/s | PG/SQLite |"
            " SQLite commit p50 / p99 (ms) | PG commit p50 / p99 (ms) |"
            " read 100: SQLite / PG (ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i in range(0, len(results), 2):
        s, p = results[i], results[i + 1]
        rows.append(
            f"| {s['batch']} × {s['writers']} | {s['msgs_per_s']:,.0f} | {p['msgs_per_s']:,.0f}"
            f" | {p['msgs_per_s'] / s['msgs_per_s']:.2f}"
            f" | {s['commit_p50_ms']:.2f} / {s['commit_p99_ms']:.2f}"
            f" | {p['commit_p50_ms']:.2f} / {p['commit_p99_ms']:.2f}"
            f" | {s['read100_p50_ms']:.2f} / {p['read100_p50_ms']:.2f} |")
    head = (f"# Store group commit: PostgreSQL vs SQLite\n\n{meta['date']}, {meta['machine']},"
            f" PostgreSQL {version} (throwaway server, same machine, default settings),"
            f" {SESSIONS} sessions, {meta['body_bytes']}-byte bodies,"
            f" {args.seconds:g} s per row.\n\n")
    (RESULTS / "store_commit.md").write_text(head + "\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
