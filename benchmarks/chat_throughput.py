"""Chat throughput and latency through one session with N members.

Starts a local Ray + Serve with Confide on a temporary data directory, connects N
members to one session, has every member send M messages as fast as acks allow
(each sender keeps a window of W unacked messages), and measures:
- delivered messages/s (every member receives every message), and
- send → receive latency (one member's send to another member's receipt), p50/p99.

The baseline, in the same run, is a bare `websockets` broadcast server in this process
(no Ray, no durability, no ordering across senders): Confide's figures are also given as
ratios to it. Results go to benchmarks/results/chat_throughput.json.

    .venv/bin/python benchmarks/chat_throughput.py [--members 10] [--messages 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_members(url: str, hello: list[dict[str, Any] | None], messages: int,
                      window: int) -> dict[str, float]:
    """Members send concurrently; returns throughput and latency figures."""
    members = len(hello)
    conns: list[ClientConnection] = []
    for h in hello:
        ws = await connect(url, max_size=2**24)
        if h is not None:
            await ws.send(json.dumps(h))
            await ws.recv()  # welcome
        conns.append(ws)
    expected = members * messages
    latencies: list[float] = []
    done = asyncio.Event()
    received = [0] * members

    async def reader(i: int, ws: ClientConnection, acks: asyncio.Queue[None]) -> None:
        while received[i] < expected:
            frame = json.loads(await ws.recv())
            kind = frame.get("type")
            if kind == "ack":
                acks.put_nowait(None)
            elif kind == "message":
                received[i] += 1
                body = frame["body"]
                if body["from"] != i:
                    latencies.append(time.perf_counter() - body["t"])
                if body["from"] == i and "offset" not in frame:
                    acks.put_nowait(None)  # the baseline has no acks: own echo counts
        if all(r >= expected for r in received):
            done.set()

    async def writer(i: int, ws: ClientConnection, acks: asyncio.Queue[None]) -> None:
        in_flight = 0
        for n in range(messages):
            while in_flight >= window:
                await acks.get()
                in_flight -= 1
            body = {"from": i, "n": n, "t": time.perf_counter()}
            await ws.send(json.dumps({"type": "message", "id": f"{i}-{n}", "body": body}))
            in_flight += 1

    queues: list[asyncio.Queue[None]] = [asyncio.Queue() for _ in conns]
    start = time.perf_counter()
    tasks = [asyncio.create_task(reader(i, ws, queues[i])) for i, ws in enumerate(conns)]
    tasks += [asyncio.create_task(writer(i, ws, queues[i])) for i, ws in enumerate(conns)]
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    for ws in conns:
        await ws.close()
    return {
        "messages": expected,
        "seconds": elapsed,
        "messages_per_s": expected / elapsed,
        "deliveries_per_s": expected * members / elapsed,
        "latency_p50_ms": quantile(latencies, 0.5) * 1000,
        "latency_p99_ms": quantile(latencies, 0.99) * 1000,
        "latency_mean_ms": statistics.fmean(latencies) * 1000,
    }


async def baseline(members: int, messages: int, window: int) -> dict[str, float]:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for raw in ws:
                frame = json.loads(raw)
                out = {"type": "message", "id": frame["id"], "body": frame["body"]}
                broadcast(clients, json.dumps(out))
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        return await run_members(f"ws://127.0.0.1:{port}", [None] * members, messages, window)


def confide(members: int, messages: int, window: int) -> dict[str, float]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve as ray_serve

    from confide.auth import mint_token
    from confide.config import Settings
    from serve_app import build_app

    secret = "benchmark-secret-0123456789abcdefghij"
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), jwt_secret=secret, port=8765,
                            rate_per_s=10_000, rate_burst=10_000, ray_namespace="bench")
        ray.init(include_dashboard=False, log_to_driver=False, namespace="bench")
        try:
            ray_serve.start(http_options={"host": "127.0.0.1", "port": settings.port})
            ray_serve.run(build_app(settings), name="confide", route_prefix="/")
            hello = [{"type": "hello", "token": mint_token(secret, f"m{i}", sessions=["bench"])}
                     for i in range(members)]
            url = f"ws://127.0.0.1:{settings.port}/ws/chat/bench"
            return asyncio.run(run_members(url, list(hello), messages, window))
        finally:
            ray_serve.shutdown()
            ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100, help="per member")
    parser.add_argument("--window", type=int, default=8, help="unacked messages per sender")
    args = parser.parse_args()
    base = asyncio.run(baseline(args.members, args.messages, args.window))
    ours = confide(args.members, args.messages, args.window)
    ratio = {
        "messages_per_s": ours["messages_per_s"] / base["messages_per_s"],
        "latency_p50": ours["latency_p50_ms"] / base["latency_p50_ms"],
        "latency_p99": ours["latency_p99_ms"] / base["latency_p99_ms"],
    }
    result = {"params": vars(args), "baseline_websockets": base, "confide": ours,
              "ratio_confide_to_baseline": ratio, "cores": os.cpu_count()}
    out = ROOT / "benchmarks" / "results" / "chat_throughput.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"{'':24}{'baseline':>12}{'confide':>12}{'ratio':>8}")
    for key, r in (("messages_per_s", "messages_per_s"), ("latency_p50_ms", "latency_p50"),
                   ("latency_p99_ms", "latency_p99")):
        print(f"{key:24}{base[key]:12.1f}{ours[key]:12.1f}{ratio[r]:8.2f}")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
