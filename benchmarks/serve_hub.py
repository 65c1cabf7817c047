"""The hub of hubs.py as a Ray Serve deployment, in Confide's Serve mode (run as a subprocess).

One replica (`num_cpus=0`, `max_ongoing_requests=5000`) behind a FastAPI ingress with the
route `/ws/chat/{session_id}`; Serve is configured exactly as `make run` configures it for
Confide (gateway/serve_mode.py: direct ingress behind Serve's HAProxy on `--port`). So the
difference between this hub and the bare one is what Serve itself costs, and the difference
between Confide and this hub is what Confide's own work costs (auth, checks, host actors,
durability, ordering).

No `from __future__ import annotations` here: FastAPI must see the real `WebSocket`
annotation, or Serve answers the upgrade with 403.

    .venv/bin/python benchmarks/serve_hub.py --port 8765   # prints "ready" once serving
"""

import argparse
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import ray
from fastapi import FastAPI, WebSocket
from ray import serve
from starlette.websockets import WebSocketDisconnect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hubs import HubState, parse  # noqa: E402  (benchmarks/ is the script's directory)

api = FastAPI(docs_url=None, redoc_url=None)


@serve.deployment(max_ongoing_requests=5000, num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class ServeHub:
    def __init__(self) -> None:
        self.state = HubState()

    @api.websocket("/ws/chat/{session_id}")
    async def chat(self, websocket: WebSocket, session_id: str) -> None:
        await websocket.accept()
        hello = parse(await websocket.receive_text())
        if hello is None or hello.get("type") != "hello":
            await websocket.close(4400, "expected hello")
            return
        user, welcome = self.state.join(session_id, websocket, hello)
        try:
            await websocket.send_text(welcome)
            while True:
                frame = parse(await websocket.receive_text())
                if frame is None or frame.get("type") != "message":
                    continue
                message, ack = self.state.publish(session_id, user, frame)
                await self._broadcast(session_id, message)
                await websocket.send_text(ack)
        except WebSocketDisconnect:
            pass
        finally:
            self.state.leave(session_id, websocket)

    async def _broadcast(self, session_id: str, text: str) -> None:
        for member in self.state.connections(session_id):
            try:
                await member.send_text(text)
            except Exception:  # noqa: BLE001  (a member that went away: its reader cleans up)
                continue


def main() -> None:
    parser = argparse.ArgumentParser(description="hub as a Ray Serve deployment")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from confide.config import Settings
    from gateway.serve_mode import apply, serve_env

    env = serve_env(Settings(port=port))
    apply(env)
    ray.init(include_dashboard=False, namespace="bench-serve-hub", runtime_env={"env_vars": env})
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(ServeHub.bind(), name="hub", route_prefix="/")  # type: ignore[attr-defined]
        print("ready", flush=True)
        stop.wait()
    finally:
        ray.shutdown()
        shutil.rmtree(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"], ignore_errors=True)


if __name__ == "__main__":
    main()
