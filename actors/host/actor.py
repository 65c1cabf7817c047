"""`HostActor`: the Ray actor around `Host`, one real method per operation.

Errors cross as the core's own exceptions (`ConfideError`, `CloseConnection`: they
pickle); anything else (a store that fails, e.g. on a full disk) is logged here, without
message bodies, and crosses as `Internal`: the client gets an `internal` error (REST: 500)
and its connection stays open.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import ray

from actors.host.host import Host
from actors.host.messages import (
    Attached,
    ChatAnswer,
    ChatItem,
    JoinAnswer,
    JoinItem,
    LeaveItem,
    Polled,
    SubmitAnswer,
    SubmitItem,
)
from actors.routing import host_name
from confide.analytics import StreamRef
from confide.audit import AuditRecord
from confide.auth import Principal
from confide.config import settings_from_actor_config
from confide.errors import CloseConnection, ConfideError, Internal
from confide.inbox import NotificationRequest
from confide.protocol import (
    AuditEvents,
    AuditQuery,
    History,
    HistoryRequest,
    Notifications,
    Status,
)

log = logging.getLogger("confide.host")

P = ParamSpec("P")
R = TypeVar("R")


def _logged(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except (ConfideError, CloseConnection):
            raise
        except Exception:
            log.exception("host operation %s failed", method.__name__)
            raise Internal("internal error") from None

    return run


def _submit_answer(done: BaseException | None) -> SubmitAnswer:
    if done is None or isinstance(done, ConfideError):
        return done
    log.error("a contribution failed: %s", type(done).__name__)
    return Internal("contribution not processed")


class _Peers:
    """Other hosts' handles by index, looked up once (for analytics reports)."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._handles: dict[int, Any] = {}

    def __call__(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = ray.get_actor(host_name(index), namespace=self._namespace)
        return self._handles[index]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)  # type: ignore[call-overload]
class HostActor:
    def __init__(self, settings: dict[str, Any], index: int) -> None:
        logging.basicConfig(level=logging.INFO)
        config = settings_from_actor_config(settings)
        self._host = Host(config, index, peers=_Peers(config.ray_namespace))

    @_logged
    async def poll(self, reader: str, incarnation: str | None, cursor: int,
                   timeout: float) -> Polled:
        return await self._host.poll(reader, incarnation, cursor, timeout)

    # ----------------------------------------------------------------- chat

    @_logged
    async def chat_joins(self, items: list[JoinItem]) -> list[JoinAnswer]:
        return await self._host.chat_joins(items)

    @_logged
    async def chat_replay(self, session_id: str, after: int, upto: int) -> list[dict[str, Any]]:
        return await self._host.chat_replay(session_id, after, upto)

    @_logged
    async def chat_leaves(self, items: list[LeaveItem]) -> list[None]:
        return await self._host.chat_leaves(items)

    @_logged
    async def chat_batch(self, items: list[ChatItem]) -> list[ChatAnswer]:
        return await self._host.chat_batch(items)

    @_logged
    async def chat_status(self, session_id: str, conn_id: str, who: Principal,
                          status: Status) -> None:
        await self._host.chat_status(session_id, conn_id, who, status)

    @_logged
    async def chat_history(self, session_id: str, req: HistoryRequest) -> History:
        return await self._host.chat_history(session_id, req)

    @_logged
    async def chat_configure(self, session_id: str, who: Principal,
                             fhe: dict[str, Any]) -> dict[str, Any]:
        return await self._host.chat_configure(session_id, who, fhe)

    @_logged
    async def chat_end(self, session_id: str, conn_id: str, who: Principal) -> None:
        await self._host.chat_end(session_id, conn_id, who)

    # -------------------------------------------------------- notifications

    @_logged
    async def inbox_post(self, producer: Principal, req: NotificationRequest,
                         idempotency_key: str | None) -> dict[str, str]:
        return await self._host.inbox_post(producer, req, idempotency_key)

    @_logged
    async def inbox_attach(self, user: str, conn_id: str) -> Attached:
        return await self._host.inbox_attach(user, conn_id)

    @_logged
    async def inbox_detach(self, user: str, conn_id: str) -> None:
        await self._host.inbox_detach(user, conn_id)

    @_logged
    async def inbox_ack(self, user: str, notification_id: str, state: str) -> None:
        await self._host.inbox_ack(user, notification_id, state)

    @_logged
    async def inbox_list(self, user: str, state: str, limit: int,
                         before: str | None) -> Notifications:
        return await self._host.inbox_list(user, state, limit, before)

    @_logged
    async def notification_status(self, notification_id: str,
                                  who: Principal) -> dict[str, Any]:
        return await self._host.notification_status(notification_id, who)

    # ------------------------------------------------------------ analytics

    @_logged
    async def stream_subscribe(self, ref: StreamRef, conn_id: str,
                               who: Principal) -> dict[str, Any] | None:
        return await self._host.stream_subscribe(ref, conn_id, who)

    @_logged
    async def stream_unsubscribe(self, ref: StreamRef, conn_id: str) -> None:
        await self._host.stream_unsubscribe(ref, conn_id)

    @_logged
    async def stream_report(self, source: str, kind: str, data: dict[str, Any]) -> None:
        await self._host.stream_report(source, kind, data)

    async def fhe_submits(self, items: list[SubmitItem]) -> list[SubmitAnswer]:
        """Each contribution's answer once it is counted (or refused), all at once."""
        done = await asyncio.gather(
            *(self._host.fhe_submit(i.ref, i.blob, i.user, i.submit_id) for i in items),
            return_exceptions=True)
        return [_submit_answer(d) for d in done]

    @_logged
    async def fhe_key_deleted(self, key_id: str) -> None:
        await self._host.fhe_key_deleted(key_id)

    # ---------------------------------------------------------- connections

    @_logged
    async def conn_acquire(self, user: str, conn_id: str, limit: int) -> bool:
        return await self._host.conn_acquire(user, conn_id, limit)

    @_logged
    async def conn_release(self, user: str, conn_id: str) -> None:
        await self._host.conn_release(user, conn_id)

    @_logged
    async def stats(self) -> dict[str, Any]:
        return await self._host.stats()

    # ---------------------------------------------------------- audit trail

    @_logged
    async def audit_record(self, records: list[AuditRecord]) -> list[None]:
        return await self._host.audit_record(records)

    @_logged
    async def audit_query(self, query: AuditQuery) -> AuditEvents:
        return await self._host.audit_query(query)
