"""Encrypted aggregation end to end through the server, against the number of FHE
workers (1, 2, 4): one busy stream (its fold split into partial sums across workers),
and many streams at once. Real Ray + Serve in Confide's Serve mode, real websockets,
real OpenFHE ciphertexts (preset `aggregation`: N = 2^14, 128-bit, 0.79 MB each).

A third case, "worker stage", measures the part that scales with workers alone: the
fold requests a host sends (shards of `fhe_shard_size` contributions in Ray's object
store, 16 in flight) straight to the FHE worker deployment, without the WebSocket
ingress in front of it.

    python benchmarks/fhe_scale.py [--quick] [--workers 1 2 4] [--preset aggregation]

Contributions per second = contributions / (first submit sent .. last ack received).
Writes benchmarks/results/fhe_scale.json. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "fhe_scale.json"
SECRET = "benchmark-secret-0123456789abcdef-0123"
# Actors read the secret from their environment, never from their arguments.
os.environ.setdefault("CONFIDE_JWT_SECRET", SECRET)


#: Contributions a connection keeps awaiting their ack (the server allows 64 per user).
WINDOW = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_load(port: int, token: Any, key_id: str, ct: str, streams: list[str],
                   per_stream: int, conns: int) -> float:
    """Seconds from the first submit to the last ack."""
    from websockets.asyncio.client import connect

    sockets = []
    for i in range(conns):
        ws = await connect(f"ws://127.0.0.1:{port}/ws/analytics", max_size=2**24,
                             compression=None)
        await ws.send(json.dumps({"type": "hello", "token": token(f"bench-{i}")}))
        await ws.recv()
        sockets.append(ws)
    jobs = [(s, n) for s in streams for n in range(per_stream)]
    started = time.perf_counter()

    async def drive(k: int, ws: Any) -> None:
        """At most WINDOW contributions of this connection await their ack (under the
        server's per-user in-flight limits, as a well-behaved client keeps)."""
        mine = jobs[k::conns]
        sent = acked = 0
        while acked < len(mine):
            while sent < len(mine) and sent - acked < WINDOW:
                stream, n = mine[sent]
                await ws.send(json.dumps({"type": "submit", "id": f"{stream}-{n}",
                                          "stream": stream, "key_id": key_id,
                                          "ciphertext": ct}))
                sent += 1
            frame = json.loads(await ws.recv())
            if frame["type"] == "error":
                raise RuntimeError(f"submit refused: {frame['code']}")
            acked += frame["type"] == "ack"

    await asyncio.gather(*(drive(k, ws) for k, ws in enumerate(sockets)))
    elapsed = time.perf_counter() - started
    for ws in sockets:
        await ws.close()
    return elapsed


async def worker_stage(app: str, key_id: str, data: bytes, shard: int, shards: int,
                       inflight: int = 16) -> float:
    """Seconds to fold `shards` shards of `shard` contributions, `inflight` at a time,
    through the worker deployment's handle (what hosts do for a busy stream)."""
    from ray import serve

    from actors.blobs import Blob
    from actors.fhe_compute import FoldRequest

    handle = serve.get_deployment_handle("FheWorker", app)
    blobs = tuple(Blob.put(data) for _ in range(shard))
    request = FoldRequest(key_id, None, blobs)
    await handle.fold.remote(request)  # warm: the key loaded on a replica
    left = shards
    started = time.perf_counter()

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            result = await handle.fold.remote(request)
            if result.total is None or any(result.refused):
                raise RuntimeError("a fold refused a contribution")

    await asyncio.gather(*(lane() for _ in range(inflight)))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    import httpx
    import ray
    from ray import serve

    from actors.directory import kill_hosts
    from confide.auth import mint_token
    from confide.config import Settings
    from fhe.client import encrypt, generate_keys
    from gateway.serve_mode import apply, runtime_dir, serve_env
    from serve_app import build_app

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--preset", default="aggregation")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    busy, many, per_stream = (64, 8, 8) if args.quick else (1024, 16, 64)

    keys = generate_keys(args.preset)
    raw = encrypt(keys, [0.5] * 8).data
    ct = base64.b64encode(raw).decode()
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="fhe-scale-"))
    env = serve_env(Settings(port=port, jwt_secret=SECRET), stats_port=free_port())
    apply(env)
    ray.init(num_cpus=max(4, max(args.workers)), include_dashboard=False,
             log_to_driver=False, namespace="fhe-scale", runtime_env={"env_vars": env})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    rows: list[dict[str, Any]] = []
    try:
        for workers in args.workers:
            settings = Settings(
                data_dir=data / f"w{workers}", jwt_secret=SECRET, port=port,
                ray_namespace=f"fs-{uuid.uuid4().hex[:6]}", fhe_min_workers=workers,
                fhe_max_workers=workers, fhe_worker_cpus=0.5, fhe_flush_s=0.1,
                fhe_shard_size=16, fhe_min_security="HEStd_NotSet",
                connections_per_replica=1000,
                # 8 connections send as fast as they can: past the default 20 frames/s
                # per connection, which would cap the load at 160 contributions/s.
                rate_per_s=10_000, rate_burst=10_000)
            serve.run(build_app(settings), name="confide", route_prefix="/")

            def token(sub: str, role: str = "client") -> str:
                return mint_token(SECRET, sub, role=role, ttl_s=3600)

            for _ in range(60):  # the previous run's replicas may still be going away
                r = httpx.post(f"http://127.0.0.1:{port}/api/fhe/keys",
                               json=keys.bundle.to_json(), timeout=300,
                               headers={"Authorization": f"Bearer {token('owner', 'therapist')}"})
                if r.status_code == 201:
                    break
                time.sleep(1.0)
            r.raise_for_status()
            for case, streams, each in (
                ("one busy stream", [f"fhe:busy-{workers}"], busy),
                ("many streams", [f"fhe:s{workers}-{i}" for i in range(many)], per_stream),
            ):
                seconds = asyncio.run(run_load(port, token, keys.key_id, ct, streams, each, 8))
                total = len(streams) * each
                rows.append({"workers": workers, "case": case, "contributions": total,
                             "seconds": seconds, "per_s": total / seconds,
                             "preset": args.preset})
                print(f"workers {workers}  {case:<16} {total:>5} contributions "
                      f"{seconds:>7.2f} s  {total / seconds:>7.1f}/s", flush=True)
            shards = 32 if args.quick else 128
            seconds = asyncio.run(worker_stage("confide", keys.key_id, raw,
                                               settings.fhe_shard_size, shards))
            total = shards * settings.fhe_shard_size
            rows.append({"workers": workers, "case": "worker stage", "contributions": total,
                         "seconds": seconds, "per_s": total / seconds, "preset": args.preset})
            print(f"workers {workers}  {'worker stage':<16} {total:>5} contributions "
                  f"{seconds:>7.2f} s  {total / seconds:>7.1f}/s", flush=True)
            serve.delete("confide")
            kill_hosts(settings)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(runtime_dir(env), ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
    report = {"benchmark": "fhe_scale", "cpus": os.cpu_count(), "quick": args.quick,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
