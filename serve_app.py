"""The Confide gateway on Ray Serve: `serve run serve_app:app`, or `build_app(settings)`.

A FastAPI ingress terminates the WebSockets; each replica pumps frames between its
connections and the host actors. `max_ongoing_requests` is the per-replica connection
budget (a WebSocket holds a slot for its whole life); no request timeout is set.
"""


import asyncio
from typing import Any

from fastapi import FastAPI, Response, WebSocket
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.deployment import Application

from actors.chat_pump import ChatPump
from actors.gateway import GatewayCore
from confide.config import Settings

api = FastAPI(title="Confide", docs_url=None, redoc_url=None)


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Gateway:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.core = GatewayCore(Settings(**settings))

    @api.websocket("/ws/chat/{session_id}")
    async def chat(self, websocket: WebSocket, session_id: str) -> None:
        await self.core.serve(websocket, ChatPump, session_id=session_id)

    @api.get("/healthz")
    async def healthz(self) -> Response:
        hosts = self.core.directory.hosts
        results = await asyncio.gather(
            *(asyncio.wait_for(h.call.remote("stats"), 5.0) for h in hosts),
            return_exceptions=True,
        )
        ready = sum(1 for r in results if isinstance(r, dict))
        ok = ready == len(hosts)
        body = {"status": "ok" if ok else "degraded", "live": True, "ready": ok,
                "hosts": len(hosts), "hosts_ready": ready, "replica": self.core.replica_id}
        return JSONResponse(body, status_code=200 if ok else 503)

    @api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(self.core.stats.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")


def build_app(settings: Settings | None = None) -> Application:
    settings = settings or Settings()
    return Gateway.options(  # type: ignore[attr-defined,no-any-return]
        max_ongoing_requests=settings.connections_per_replica,
        num_replicas=settings.gateway_replicas,
    ).bind(settings.model_dump(mode="json"))


app = build_app()
