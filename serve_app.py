"""The Confide gateway on Ray Serve, and the entry point of `make run` (`python -m serve_app`).

`serve run serve_app:app` or `build_app(settings)` give the application; `main()` starts a
local Ray and Serve in Confide's Serve mode (gateway/serve_mode.py) and serves it.

A FastAPI ingress terminates the WebSockets and serves the REST API; each replica pumps
frames between its connections and the host actors. `max_ongoing_requests` is the
per-replica connection budget (a WebSocket holds a slot for its whole life); no request
timeout is set, since one would close live sockets.
"""

import asyncio
import os
import shutil
import signal
import threading
import uuid
from typing import Any

if __name__ == "__main__":
    # `make run`: Ray's token authentication on. Ray reads the mode once, when it is
    # imported, so it is set here; the token itself is found in main().
    os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.fhe_client import FheWorkers
from actors.fhe_worker import FheWorker, fhe_worker_options
from confide import audit, strictjson
from confide.audit import Outcome
from confide.config import Settings, actor_config, settings_from_actor_config
from confide.errors import CloseConnection, ConfideError, Forbidden, InvalidMessage
from confide.inbox import NotificationRequest, check_producer
from confide.protocol import AuditQuery
from confide.store.sqlite_files import secure_directory
from fhe.models import MODELS, LinearModel
from gateway.audit import AUDIT_ENTITY
from gateway.audit import record as record_audit
from gateway.bodylimit import BodyLimit, BodyLimits
from gateway.pumps.analytics import AnalyticsPump
from gateway.pumps.chat import ChatPump
from gateway.pumps.inbox import InboxPump
from gateway.replica import GatewayReplica
from gateway.serve_mode import apply, ray_auth_env, runtime_dir, serve_env
from gateway.web import dev_tokens_enabled, file_response, mint_dev_token

api = FastAPI(title="Confide", docs_url=None, redoc_url=None)
#: REST body limits, set from the replica's settings in `Gateway.__init__` (one per process).
body_limits = BodyLimits()
api.add_middleware(BodyLimit, limits=body_limits)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@api.exception_handler(ConfideError)
async def _confide_error(request: Request, exc: ConfideError) -> JSONResponse:
    if exc.http_status == 403:
        _audit(request, "denied")
    return _error(exc.http_status, exc.code.value, exc.message)


@api.exception_handler(CloseConnection)
async def _auth_error(request: Request, exc: CloseConnection) -> JSONResponse:
    _audit(request, "unauthenticated")
    return _error(401, "unauthorized", exc.reason)


@api.exception_handler(Exception)
async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen (a failing store, e.g. a full disk) is a 500 `internal` with
    no detail, in the API's error shape."""
    return _error(500, "internal", "internal error")


def _audit(request: Request, outcome: Outcome = "ok") -> None:
    """Record the request in the audit trail (by route: see gateway/audit.py)."""
    core: GatewayReplica | None = getattr(request.app.state, "gateway", None)
    if core is None:
        return
    route = request.scope.get("route")
    core.audit_rest(request.method, getattr(route, "path", None), dict(request.path_params),
                    request.url.path, request.headers.get("authorization"), outcome)


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}.get(
        exc.status_code, "invalid_message" if exc.status_code < 500 else "internal"
    )
    return _error(exc.status_code, code, str(exc.detail))


async def _json_body(request: Request) -> Any:
    try:
        return strictjson.loads(await request.body())  # NaN, Infinity, 1e400: 400
    except (ValueError, RecursionError):
        raise InvalidMessage("request body is not valid JSON") from None


def _fields(error: ValidationError) -> str:
    names = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in error.errors()})
    return "invalid field(s): " + ", ".join(names[:8])


class SessionFheConfig(BaseModel):
    """`PUT /api/sessions/{id}/fhe`: encrypted insights for a chat session."""

    model_config = ConfigDict(extra="forbid")
    key_id: str = Field(min_length=1, max_length=128)
    #: A shipped model's name (see fhe/models.py) or a custom linear model.
    model: str | dict[str, Any] = "mood-risk-v1"


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Gateway:
    def __init__(self, settings: dict[str, Any], fhe: DeploymentHandle[Any]) -> None:
        self.core = GatewayReplica(settings_from_actor_config(settings))
        body_limits.configure(self.core.settings)
        self.fhe = FheWorkers(fhe)
        api.state.gateway = self.core  # the REST error handlers record refusals through it

    @api.websocket("/ws/chat/{session_id}")
    async def chat(self, websocket: WebSocket, session_id: str) -> None:
        await self.core.serve(websocket, ChatPump, session_id=session_id)

    @api.websocket("/ws/notifications")
    async def notifications(self, websocket: WebSocket) -> None:
        await self.core.serve(websocket, InboxPump)

    @api.websocket("/ws/analytics")
    async def analytics(self, websocket: WebSocket) -> None:
        await self.core.serve(websocket, AnalyticsPump)

    @api.post("/api/notifications")
    async def post_notification(self, request: Request) -> JSONResponse:
        who = self.core.rest_principal(request.headers.get("authorization"))
        check_producer(who.role)
        body = await _json_body(request)
        try:
            req = NotificationRequest.model_validate(body)
        except ValidationError as e:
            raise InvalidMessage(_fields(e)) from None
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= 128:
            raise InvalidMessage("Idempotency-Key must be 1 to 128 characters")
        # Without a client key, one per request still makes the host's retried call
        # (after a host crash) idempotent.
        key = key if key is not None else f"auto:{uuid.uuid4().hex}"
        result = await self.core.hosts.host_for(f"inbox:{req.user}").inbox_post(who, req, key)
        return JSONResponse(result, status_code=202)

    @api.get("/api/notifications/{notification_id}")
    async def get_notification(self, notification_id: str, request: Request) -> JSONResponse:
        who = self.core.rest_principal(request.headers.get("authorization"))
        host = self.core.hosts.host_for(f"notification:{notification_id}")
        result = await host.notification_status(notification_id, who)
        return JSONResponse(result)

    @api.post("/api/fhe/keys")
    async def register_key(self, request: Request) -> JSONResponse:
        who = self.core.rest_principal(request.headers.get("authorization"))
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise InvalidMessage("body must be a JSON object")
        result = await self.fhe.register(who.user, body)
        record_audit(self.core.hosts, who.user, audit.KEY_REGISTER, str(result["key_id"]))
        return JSONResponse(result, status_code=201)

    @api.get("/api/fhe/keys/{key_id}")
    async def key_info(self, key_id: str, request: Request) -> JSONResponse:
        who = self.core.rest_principal(request.headers.get("authorization"))
        result = await self.fhe.key_info(key_id)
        record_audit(self.core.hosts, who.user, audit.KEY_FETCH, key_id)
        return JSONResponse(result)

    @api.get("/api/fhe/keys/{key_id}/public")
    async def key_public(self, key_id: str, request: Request) -> JSONResponse:
        """PROTOCOL 1.1: the context and public key (base64), for contributors."""
        self.core.rest_principal(request.headers.get("authorization"))
        return JSONResponse(await self.fhe.public_key(key_id))

    @api.delete("/api/fhe/keys/{key_id}")
    async def delete_key(self, key_id: str, request: Request) -> Response:
        who = self.core.rest_principal(request.headers.get("authorization"))
        await self.fhe.delete_key(key_id, who)
        record_audit(self.core.hosts, who.user, audit.KEY_DELETE, key_id)
        for host in self.core.hosts.hosts:
            host.fhe_key_deleted(key_id)
        return Response(status_code=204)

    @api.get("/api/audit")
    async def audit_trail(self, request: Request) -> JSONResponse:
        """Access events, newest first (admins only; PROTOCOL 1.1, "Audit trail")."""
        who = self.core.rest_principal(request.headers.get("authorization"))
        if who.role != "admin":
            raise Forbidden("only admins may read the audit trail")
        try:
            query = AuditQuery.model_validate(dict(request.query_params))
        except ValidationError as e:
            raise InvalidMessage(_fields(e)) from None
        events = await self.core.hosts.host_for(AUDIT_ENTITY).audit_query(query)
        record_audit(self.core.hosts, who.user, audit.AUDIT_READ, "audit")
        return JSONResponse(events.dump())

    @api.put("/api/sessions/{session_id}/fhe")
    async def configure_session(self, session_id: str, request: Request) -> JSONResponse:
        who = self.core.rest_principal(request.headers.get("authorization"))
        try:
            req = SessionFheConfig.model_validate(await _json_body(request))
            model = (MODELS[req.model] if isinstance(req.model, str)
                     else LinearModel.from_dict(req.model))
        except ValidationError as e:
            raise InvalidMessage(_fields(e)) from None
        except (KeyError, TypeError):
            raise InvalidMessage("model: unknown name or not a linear model") from None
        except ValueError as e:  # not finite, weights without features, ...
            raise InvalidMessage(f"model: {e}") from None
        fhe = {"key_id": req.key_id, "model": model.to_dict()}
        host = self.core.hosts.host_for(f"chat:{session_id}")
        result = await host.chat_configure(session_id, who, fhe)
        return JSONResponse(result)

    # ------------------------------------------------ the browser client (gateway/web.py)

    @api.get("/")
    async def demo_page(self) -> Response:
        return file_response("index.html")

    @api.get("/static/{name:path}")
    async def static_file(self, name: str) -> Response:
        return file_response(name)

    @api.get("/api/dev")
    async def dev_info(self) -> JSONResponse:
        return JSONResponse({"dev_tokens": dev_tokens_enabled(self.core.settings)})

    @api.post("/api/dev/token")
    async def dev_token(self, request: Request) -> JSONResponse:
        return JSONResponse(mint_dev_token(self.core.settings, await _json_body(request)))

    @api.get("/healthz")
    async def healthz(self) -> Response:
        self.core.start()
        hosts = self.core.hosts.hosts
        results = await asyncio.gather(*(h.stats(5.0) for h in hosts), return_exceptions=True)
        ready = sum(1 for r in results if isinstance(r, dict))
        ok = ready == len(hosts)
        body = {"status": "ok" if ok else "degraded", "live": True, "ready": ok,
                "hosts": len(hosts), "hosts_ready": ready, "replica": self.core.replica_id}
        return JSONResponse(body, status_code=200 if ok else 503)

    @api.get("/metrics")
    async def metrics(self) -> Response:
        self.core.start()
        return Response(self.core.stats.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")


def build_app(settings: Settings | None = None) -> Application:
    settings = settings or Settings()
    config = actor_config(settings)  # no secrets in actor arguments
    workers = FheWorker.options(**fhe_worker_options(settings)).bind(config)  # type: ignore[attr-defined]
    return Gateway.options(  # type: ignore[attr-defined,no-any-return]
        max_ongoing_requests=settings.connections_per_replica,
        num_replicas=settings.gateway_replicas,
    ).bind(config, workers)


app = build_app()


def main() -> None:
    """`make run`: a local Ray, the app on CONFIDE_HOST:CONFIDE_PORT, SQLite on disk.

    Runs in the foreground; Ctrl-C stops Serve and the local Ray with every process it
    started (the detached host actors too). Data stays under CONFIDE_DATA_DIR.
    """
    settings = Settings()
    secure_directory(settings.data_dir)  # 0700: the database and the dev secret live here
    # Ray's token authentication on, with RAY_AUTH_TOKEN(_PATH) or ~/.ray/auth_token when
    # there is one, else a token made once in the data dir (Ray makes none itself).
    if os.environ.get("RAY_AUTH_MODE", "token") == "token":
        apply(ray_auth_env(settings.data_dir))
    secret_note = (
        "CONFIDE_JWT_SECRET" if settings.jwt_secret
        else f"the dev secret in {settings.data_dir / 'dev-jwt-secret'}"
    )
    settings.signing_secret()  # create the dev secret before the replicas read it
    env = serve_env(settings)
    apply(env)
    env["CONFIDE_DATA_DIR"] = str(settings.data_dir.resolve())
    ray.init(include_dashboard=False, namespace=settings.ray_namespace,
             runtime_env={"env_vars": env})
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        http: dict[str, object] = {"host": settings.host, "port": settings.port}
        if settings.tls_cert and settings.tls_key:
            http |= {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        serve.start(http_options=http)
        serve.run(build_app(settings), name=settings.app_name, route_prefix="/")
        scheme = "https" if settings.tls_cert else "http"
        ws = "wss" if settings.tls_cert else "ws"
        base = f"{settings.host}:{settings.port}"
        print(
            f"\nConfide is up: {scheme}://{base}/healthz\n"
            f"  chat:          {ws}://{base}/ws/chat/<session>\n"
            f"  notifications: {ws}://{base}/ws/notifications\n"
            f"  analytics:     {ws}://{base}/ws/analytics\n"
            f"  demo page:     {scheme}://{base}/ (web client: /static/confide-client.js)\n"
            f"  store:         {settings.store_url()}\n"
            f"Tokens are signed with {secret_note}. Mint one with:\n"
            f"  .venv/bin/confide token --sub alice --sessions s1\n"
            f"then: .venv/bin/confide chat {ws}://{base}/ws/chat/s1 --token <token>\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        stop.wait()
    finally:
        # Ctrl-C reaches Ray's own processes too (same process group): no graceful Serve
        # drain is possible then. Everything acknowledged is already in the store.
        print("stopping Ray and every process it started...", flush=True)
        ray.shutdown()
        shutil.rmtree(runtime_dir(env), ignore_errors=True)


if __name__ == "__main__":
    main()
