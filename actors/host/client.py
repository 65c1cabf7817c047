"""`HostClient`: the typed client of one host actor that a gateway replica uses.

Chat messages, joins and leaves of every connection of the replica travel together: at
most one call of each kind is in flight per (replica, host), carrying everything queued
since the previous one left, so load batches itself (one Ray call, one group commit for
many messages). Each connection's messages stay in the order it sent them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from actors.blobs import Blob
from actors.host.batcher import Batcher
from actors.host.messages import (
    Attached,
    ChatAnswer,
    ChatItem,
    JoinAnswer,
    Joined,
    JoinItem,
    LeaveItem,
    Polled,
    SubmitAnswer,
    SubmitItem,
)
from actors.ray_errors import unwrap
from confide.analytics import StreamRef
from confide.audit import AuditRecord
from confide.auth import Principal
from confide.errors import CloseConnection, ConfideError, Internal, Overloaded
from confide.inbox import NotificationRequest
from confide.protocol import (
    AuditEvents,
    AuditQuery,
    Error,
    History,
    HistoryRequest,
    Notifications,
    Resume,
    Status,
)

log = logging.getLogger("confide.host")

#: Chat messages one `chat_batch` call carries at most.
MAX_BATCH = 1024
#: `fhe_submits` calls in flight per (replica, host).
SUBMIT_CALLS = 4

AnswerCallback = Callable[[ChatAnswer], None]


def _message_failed(item: ChatItem, exc: Exception) -> ChatAnswer:
    if not isinstance(exc, ConfideError):
        log.error("a batch of chat messages failed: %s", type(exc).__name__)
        exc = Internal("message could not be stored")
    return Error(code=exc.code.value, message=exc.message, id=item.message.id)


def _join_failed(item: JoinItem, exc: Exception) -> JoinAnswer:
    if isinstance(exc, (ConfideError, CloseConnection)):
        return exc
    log.error("a batch of joins failed: %s", type(exc).__name__)
    return Internal("could not join the session")


def _submit_failed(item: SubmitItem, exc: Exception) -> SubmitAnswer:
    if isinstance(exc, ConfideError):
        return exc
    log.error("a batch of contributions failed: %s", type(exc).__name__)
    return Internal("contribution not processed")


def _leave_failed(item: LeaveItem, exc: Exception) -> None:
    log.warning("a batch of leaves failed: %s", type(exc).__name__)


def _audit_failed(item: AuditRecord, exc: Exception) -> None:
    log.warning("a batch of audit events failed: %s", type(exc).__name__)


class HostClient:
    def __init__(self, actor: Any, max_batch: int = MAX_BATCH,
                 submit_bytes: int = 256 << 20) -> None:
        self.actor = actor
        #: Contributions' bytes this replica may have on their way to this host, queued
        #: here or there or being folded (`fhe_host_queue_bytes`): past it, `overloaded`.
        self.submit_limit = submit_bytes
        self.submit_bytes = 0
        #: Chat messages, joins and leaves of every connection of the replica, batched.
        self.messages: Batcher[ChatItem, ChatAnswer] = Batcher(
            lambda items: self._wait(self.actor.chat_batch.remote(items)),
            _message_failed, max_batch)
        self.joins: Batcher[JoinItem, JoinAnswer] = Batcher(
            lambda items: self._wait(self.actor.chat_joins.remote(items)),
            _join_failed, max_batch)
        self.leaves: Batcher[LeaveItem, None] = Batcher(
            lambda items: self._wait(self.actor.chat_leaves.remote(items)),
            _leave_failed, max_batch)
        #: Encrypted contributions: each call waits for its folds, so a few are in flight.
        self.submits: Batcher[SubmitItem, SubmitAnswer] = Batcher(
            lambda items: self._wait(self.actor.fhe_submits.remote(items)),
            _submit_failed, max_batch, max_inflight=SUBMIT_CALLS)
        #: Audit events of the replica's connections and requests, batched likewise.
        self.audits: Batcher[AuditRecord, None] = Batcher(
            lambda items: self._wait(self.actor.audit_record.remote(items)),
            _audit_failed, max_batch)

    async def _wait(self, ref: Any) -> Any:
        """A call's result; errors come back as the core's own exceptions."""
        try:
            return await ref
        except Exception as exc:
            inner = unwrap(exc)
            if inner is not exc and isinstance(inner, (ConfideError, CloseConnection)):
                raise inner from None
            raise

    # ------------------------------------------------------------- batched

    def send_message(self, item: ChatItem, on_answer: AnswerCallback) -> None:
        """Queue a chat message; `on_answer` gets its ack, error or close (on this loop)."""
        self.messages.add(item, on_answer)

    async def chat_join(self, session_id: str, conn_id: str, who: Principal,
                        resume: Resume | None, quiet: bool) -> Joined:
        answer = await self.joins.ask(JoinItem(session_id, conn_id, who, resume, quiet))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def chat_leave(self, session_id: str, conn_id: str) -> None:
        """Queue a connection's leave (no await: a closing connection's task may be
        cancelled at any await, and the leave must still reach the host)."""
        self.leaves.add(LeaveItem(session_id, conn_id), lambda _: None)

    # ------------------------------------------------------------------ calls

    async def poll(
        self, reader: str, incarnation: str | None, cursor: int, timeout: float
    ) -> Polled:
        polled: Polled = await self._wait(
            self.actor.poll.remote(reader, incarnation, cursor, timeout)
        )
        return polled

    async def chat_replay(self, session_id: str, after: int, upto: int) -> list[dict[str, Any]]:
        page: list[dict[str, Any]] = await self._wait(
            self.actor.chat_replay.remote(session_id, after, upto)
        )
        return page

    async def chat_status(
        self, session_id: str, conn_id: str, who: Principal, status: Status
    ) -> None:
        await self._wait(self.actor.chat_status.remote(session_id, conn_id, who, status))

    async def chat_history(self, session_id: str, req: HistoryRequest) -> History:
        history: History = await self._wait(self.actor.chat_history.remote(session_id, req))
        return history

    async def chat_configure(
        self, session_id: str, who: Principal, fhe: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._wait(
            self.actor.chat_configure.remote(session_id, who, fhe)
        )
        return result

    async def chat_end(self, session_id: str, conn_id: str, who: Principal) -> None:
        await self._wait(self.actor.chat_end.remote(session_id, conn_id, who))

    async def inbox_post(
        self, producer: Principal, req: NotificationRequest, idempotency_key: str | None
    ) -> dict[str, str]:
        result: dict[str, str] = await self._wait(
            self.actor.inbox_post.remote(producer, req, idempotency_key)
        )
        return result

    async def inbox_attach(self, user: str, conn_id: str) -> Attached:
        attached: Attached = await self._wait(self.actor.inbox_attach.remote(user, conn_id))
        return attached

    async def inbox_detach(self, user: str, conn_id: str) -> None:
        await self._wait(self.actor.inbox_detach.remote(user, conn_id))

    async def inbox_ack(self, user: str, notification_id: str, state: str) -> None:
        await self._wait(self.actor.inbox_ack.remote(user, notification_id, state))

    async def inbox_list(
        self, user: str, state: str, limit: int, before: str | None
    ) -> Notifications:
        items: Notifications = await self._wait(
            self.actor.inbox_list.remote(user, state, limit, before)
        )
        return items

    async def notification_status(self, notification_id: str, who: Principal) -> dict[str, Any]:
        result: dict[str, Any] = await self._wait(
            self.actor.notification_status.remote(notification_id, who)
        )
        return result

    async def stream_subscribe(
        self, ref: StreamRef, conn_id: str, who: Principal
    ) -> dict[str, Any] | None:
        snapshot: dict[str, Any] | None = await self._wait(
            self.actor.stream_subscribe.remote(ref, conn_id, who)
        )
        return snapshot

    async def stream_unsubscribe(self, ref: StreamRef, conn_id: str) -> None:
        await self._wait(self.actor.stream_unsubscribe.remote(ref, conn_id))

    async def stream_report(self, source: str, kind: str, data: dict[str, Any]) -> None:
        await self._wait(self.actor.stream_report.remote(source, kind, data))

    async def fhe_submit(self, ref: StreamRef, ciphertext: bytes, user: str | None = None,
                         submit_id: str | None = None) -> None:
        """Idempotent by (user, submit_id): a retry after a host crash is not counted twice.
        The bytes go to Ray's object store from here; the host passes on the reference.
        Batched with the replica's other contributions to the same host; a few calls are
        in flight, so contributions may wait here, and what waits here or there is
        bounded by `submit_limit`, as the host's own queue is."""
        size = len(ciphertext)
        if self.submit_bytes + size > self.submit_limit:
            raise Overloaded("encrypted computation is overloaded; retry later")
        self.submit_bytes += size
        try:
            answer = await self.submits.ask(
                SubmitItem(ref, Blob.put(ciphertext), user, submit_id))
        finally:
            self.submit_bytes -= size
        if answer is not None:
            raise answer

    def fhe_key_deleted(self, key_id: str) -> None:
        """Fire and forget: the host drops its cached key record."""
        self.actor.fhe_key_deleted.remote(key_id)

    async def conn_acquire(self, user: str, conn_id: str, limit: int) -> bool:
        """Whether `user` may open one more WebSocket across the cluster (counted if so)."""
        allowed: bool = await self._wait(self.actor.conn_acquire.remote(user, conn_id, limit))
        return allowed

    def conn_release(self, user: str, conn_id: str) -> None:
        """Fire and forget (a closing connection's task may be cancelled at any await);
        a lost release is undone when the replica's lease runs out (`reap`)."""
        self.actor.conn_release.remote(user, conn_id)
    def audit(self, rec: AuditRecord) -> None:
        """Queue an audit event for this host (no await: batched, off the caller's path)."""
        self.audits.add(rec, lambda _: None)

    async def audit_query(self, query: AuditQuery) -> AuditEvents:
        events: AuditEvents = await self._wait(self.actor.audit_query.remote(query))
        return events

    async def stats(self, timeout: float) -> dict[str, Any]:
        stats: dict[str, Any] = await asyncio.wait_for(
            self._wait(self.actor.stats.remote()), timeout
        )
        return stats
