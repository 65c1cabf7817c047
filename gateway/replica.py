"""What one gateway replica holds: settings, token verifier, hosts, fan-out, metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from starlette.websockets import WebSocket, WebSocketState

from actors.directory import Directory
from actors.host import HostClient
from actors.ray_export import RayExporter
from confide.audit import ANONYMOUS, CONNECT, Outcome
from confide.auth import Principal, TokenVerifier
from confide.config import Settings
from confide.connection import authenticate, bearer, frame_limit
from confide.errors import CloseCode, CloseConnection, Unauthorized
from confide.metrics import GatewayStats
from confide.protocol import SUBPROTOCOL, Endpoint, Hello
from gateway.audit import record as record_audit
from gateway.audit import rest_action
from gateway.fanout import Fanout
from gateway.pumps.base import Pump, PumpContext
from gateway.transport import bound_inflation

log = logging.getLogger("confide.gateway")


class GatewayReplica:
    """The WebSocket runtime of one Serve replica of the gateway."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.replica_id = uuid.uuid4().hex[:8]
        self.verifier = TokenVerifier(settings)
        self.hosts = Directory(settings)
        self.fanout = Fanout(self.hosts, settings.poll_timeout_s, self.replica_id)
        self.stats = GatewayStats()
        self.pump_context = PumpContext(settings, self.stats, self.fanout, self.hosts)
        self._reporter: asyncio.Task[None] | None = None
        #: Accepted WebSockets still waiting for their `hello` (a per-replica budget).
        self.pending_handshakes = 0

    def start(self) -> None:
        """Start the replica's background loops (on its event loop, at first use)."""
        self.fanout.start()
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._report_loop())

    async def _report_loop(self) -> None:
        """Each second, this replica's figures go to the `system` analytics stream."""
        source = f"gateway-{self.replica_id}"
        exporter = RayExporter(self.stats.registry)
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                await self.hosts.host_for("stream:system").stream_report(
                    source, "gateway", self.stats.snapshot())
                if tick % 5 == 0:
                    self.stats.render()  # refreshes the memory gauge
                    exporter.export()
            except Exception:  # analytics must never disturb the gateway
                log.warning("could not report gateway figures", exc_info=True)

    def rest_principal(self, authorization: str | None) -> Principal:
        """The caller of a REST request (any role); `Unauthorized` without a valid token."""
        token = bearer(authorization)
        if token is None:
            raise Unauthorized("missing bearer token")
        return self.verifier.verify(token)

    def audit_rest(self, method: str, template: str | None, params: dict[str, str],
                   path: str, authorization: str | None, outcome: Outcome = "ok") -> None:
        """Record a REST request's access (or its refusal) in the audit trail."""
        try:
            actor = self.rest_principal(authorization).user
        except CloseConnection:
            actor = ANONYMOUS
        action, target = rest_action(method, template, params, path)
        record_audit(self.hosts, actor, action, target, outcome)

    def conn_id(self) -> str:
        return f"{self.replica_id}:{uuid.uuid4().hex[:12]}"

    async def handshake(
        self, ws: WebSocket, endpoint: Endpoint, limit: int
    ) -> tuple[Principal, Hello] | None:
        """Accept the upgrade and authenticate; None when the socket was closed instead."""
        offered = ws.scope.get("subprotocols") or []
        if not bound_inflation(ws, limit):
            log.debug("inflation of compressed frames is not bounded on this server")
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        if self.pending_handshakes >= self.settings.max_pending_handshakes:
            busy = CloseConnection(CloseCode.OVERLOADED, "too many pending handshakes")
            await self._refuse(ws, endpoint, busy)
            return None
        try:
            self.pending_handshakes += 1
            try:
                msg = await asyncio.wait_for(ws.receive(), self.settings.hello_timeout_s)
            except asyncio.TimeoutError:
                raise CloseConnection(CloseCode.TIMEOUT, "no hello in time") from None
            finally:
                self.pending_handshakes -= 1
            if msg["type"] == "websocket.disconnect":
                return None
            raw = msg.get("text")
            first: str | bytes = raw if raw is not None else msg.get("bytes") or b""
            if len(first.encode() if isinstance(first, str) else first) > limit:
                raise CloseConnection(CloseCode.TOO_LARGE, "frame too large")
            return authenticate(self.verifier, bearer(ws.headers.get("authorization")), first)
        except CloseConnection as close:
            await self._refuse(ws, endpoint, close)
            return None

    async def _refuse(self, ws: WebSocket, endpoint: Endpoint, close: CloseConnection,
                      actor: str = ANONYMOUS) -> None:
        if close.close_code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN):
            outcome: Outcome = (
                "unauthenticated" if close.close_code == CloseCode.UNAUTHORIZED else "denied")
            target = str(ws.path_params.get("session_id") or ws.url.path)
            record_audit(self.hosts, actor, CONNECT, target, outcome)
        self.stats.closed(endpoint, int(close.close_code))
        if ws.application_state == WebSocketState.CONNECTED:
            await ws.close(int(close.close_code), close.reason)

    async def serve(self, ws: WebSocket, pump_type: type[Pump], **kwargs: object) -> None:
        """One WebSocket's whole life on an endpoint."""
        self.start()
        endpoint = pump_type.endpoint
        shaken = await self.handshake(ws, endpoint, frame_limit(self.settings, endpoint))
        if shaken is None:
            return
        who, hello = shaken
        if who.role == "service":
            # service tokens may only use REST (PROTOCOL.md, Authentication)
            await self._refuse(ws, endpoint, CloseConnection(CloseCode.FORBIDDEN, "REST only"),
                               who.user)
            return
        conn_id = self.conn_id()
        owner = self.hosts.host_for(f"user:{who.user}")
        if not await self._admit(owner, who.user, conn_id):
            too_many = CloseConnection(CloseCode.RATE_LIMITED, "too many connections")
            await self._refuse(ws, endpoint, too_many)
            return
        started = time.monotonic()
        self.stats.opened(endpoint)
        try:
            pump = pump_type(ws, self.pump_context, who, hello, conn_id, **kwargs)
            await pump.run()
        finally:
            owner.conn_release(who.user, conn_id)
            self.stats.ended(endpoint, time.monotonic() - started)

    async def _admit(self, owner: HostClient, user: str, conn_id: str) -> bool:
        """The per-user connection cap (PROTOCOL 1.1), counted on the user's host. A host
        that cannot answer (restarting) does not keep users out: it admits."""
        try:
            return await owner.conn_acquire(
                user, conn_id, self.settings.max_connections_per_user)
        except Exception as exc:  # noqa: BLE001 - availability over the cap
            log.warning("connection count unavailable (%s): admitted", type(exc).__name__)
            return True
