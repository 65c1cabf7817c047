"""The host actor: holds many entities (chat sessions, inboxes, streams) and their I/O.

Entities are plain classes from the core. The host loads them from the store on first
use, commits what they accept before acking and publishing, and keeps an event log that
gateway replicas long-poll. A restarted host comes back empty and reloads lazily.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import ray

from actors.commit import GroupCommitter
from confide.auth import Principal
from confide.chat import ChatSession
from confide.config import Settings
from confide.errors import ConfideError, Internal, NotFound
from confide.events import Event, EventLog
from confide.protocol import ChatMessage, HistoryRequest, Resume, Status
from confide.store import SessionRecord, StoredMessage, open_store

log = logging.getLogger("confide.host")

REPLAY_PAGE = 500


class Host:
    """The host's logic without Ray, so it can be driven directly in tests."""

    def __init__(self, settings: Settings, index: int) -> None:
        self.settings = settings
        self.index = index
        self.incarnation = uuid.uuid4().hex
        self.store = open_store(settings.store_url())
        self.log = EventLog(settings.event_buffer)
        self._wake: asyncio.Future[None] | None = None
        self._sessions: dict[str, ChatSession] = {}
        self._loading: dict[str, asyncio.Future[ChatSession]] = {}
        self._touched: dict[str, float] = {}
        self._inflight: dict[tuple[str, str, str], asyncio.Future[int]] = {}
        self.committer = GroupCommitter(self._write, self.publish, self._forget)
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ event log

    def publish(self, event: Event) -> None:
        self.log.append(event)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def poll(self, incarnation: str | None, cursor: int, timeout: float) -> dict[str, Any]:
        """Events after `cursor`, waiting up to `timeout` s for the first one.

        A reader of another incarnation (or a first reader) is answered at once with no
        events and the current head: it starts from there and resyncs from the store.
        """
        self._start_sweeper()
        if incarnation != self.incarnation:
            return {"incarnation": self.incarnation, "events": [], "cursor": self.log.head,
                    "lost": False}
        deadline = time.monotonic() + timeout
        while self.log.head <= cursor:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._wake is None or self._wake.done():
                self._wake = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._wake), remaining)
            except asyncio.TimeoutError:
                break
        events, lost = self.log.since(cursor)
        return {
            "incarnation": self.incarnation,
            "events": events,
            "cursor": events[-1].seq if events else cursor,
            "lost": lost,
        }

    # ------------------------------------------------------------- entities

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.entity_ttl_s))
            cutoff = time.monotonic() - self.settings.entity_ttl_s
            for sid in [s for s, t in self._touched.items() if t < cutoff]:
                session = self._sessions.get(sid)
                if session is not None and session.connection_count == 0:
                    self._forget({sid})

    def _forget(self, session_ids: set[str]) -> None:
        for sid in session_ids:
            self._sessions.pop(sid, None)
            self._touched.pop(sid, None)

    async def session(self, session_id: str) -> ChatSession:
        self._touched[session_id] = time.monotonic()
        found = self._sessions.get(session_id)
        if found is not None:
            return found
        loading = self._loading.get(session_id)
        if loading is not None:
            return await asyncio.shield(loading)
        fut: asyncio.Future[ChatSession] = asyncio.get_running_loop().create_future()
        self._loading[session_id] = fut
        try:
            record = await asyncio.to_thread(self._load_or_create, session_id)
            session = ChatSession.load(record)
            self._sessions[session_id] = session
            fut.set_result(session)
            return session
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters, if any, got it
            raise
        finally:
            del self._loading[session_id]

    def _load_or_create(self, session_id: str) -> SessionRecord:
        record = self.store.load_session(session_id)
        if record is None:
            fresh = SessionRecord(session_id, uuid.uuid4().hex[:16], time.time())
            record = self.store.create_session(fresh)
        return record

    def _write(self, messages: list[StoredMessage]) -> None:
        self.store.append_messages(messages, self.settings.retention_messages)

    # ----------------------------------------------------------------- chat

    async def chat_join(
        self, session_id: str, conn_id: str, who: Principal, resume: Resume | None, quiet: bool
    ) -> dict[str, Any]:
        session = await self.session(session_id)
        welcome, plan, events = session.join(conn_id, who, resume, quiet)
        for e in events:
            self.publish(e)
        return {
            "welcome": welcome,
            "replay_after": plan.replay_after,
            "upto": plan.upto,
            "large_frames": bool(session.config.get("fhe")),
        }

    async def chat_replay(
        self, session_id: str, after: int, upto: int
    ) -> list[dict[str, Any]]:
        """Stored messages in (after, upto], at most a page of them, oldest first."""
        msgs = await asyncio.to_thread(
            self.store.messages_after, session_id, after, upto, REPLAY_PAGE
        )
        return [m.frame() for m in msgs]

    async def chat_leave(self, session_id: str, conn_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            for e in session.leave(conn_id):
                self.publish(e)

    async def chat_message(
        self, session_id: str, conn_id: str, who: Principal, msg: ChatMessage
    ) -> dict[str, Any]:
        session = await self.session(session_id)
        sender = who.user
        key = (session_id, sender, msg.id)
        offset = session.known_offset(sender, msg.id)
        if offset is None:
            found = await asyncio.to_thread(self.store.find_message, session_id, sender, msg.id)
            offset = session.known_offset(sender, msg.id)  # a twin may have won meanwhile
            if offset is None and found is not None:
                session.remember(sender, msg.id, found.offset)
                offset = found.offset
        if offset is not None:
            pending = self._inflight.get(key)
            if pending is not None:
                await asyncio.shield(pending)
            return {"type": "ack", "id": msg.id, "offset": offset}
        stored = session.accept(conn_id, who, msg, time.time())
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            await self.committer.commit(stored, session.published(stored))
        except Exception:
            log.exception("commit failed for a message of session %s", session_id)
            done.set_exception(Internal("message could not be stored"))
            done.exception()
            raise Internal("message could not be stored") from None
        finally:
            self._inflight.pop(key, None)
        done.set_result(stored.offset)
        session.trimmed(self.settings.retention_messages)
        return {"type": "ack", "id": msg.id, "offset": stored.offset}

    async def chat_status(
        self, session_id: str, conn_id: str, who: Principal, status: Status
    ) -> None:
        session = await self.session(session_id)
        for e in session.set_status(conn_id, who, status, time.time()):
            self.publish(e)

    async def chat_history(self, session_id: str, req: HistoryRequest) -> dict[str, Any]:
        session = await self.session(session_id)
        before = session.history_bounds(req.before)
        msgs = await asyncio.to_thread(
            self.store.messages_before, session_id, before, req.limit
        )
        complete = not msgs or msgs[0].offset <= session.first_offset
        if not msgs and before > session.first_offset:
            complete = True
        return {
            "type": "history",
            "messages": [m.frame() for m in msgs],
            "complete": complete,
        }

    async def chat_end(self, session_id: str, conn_id: str, who: Principal) -> None:
        session = await self.session(session_id)
        events = session.end(conn_id, who)
        await asyncio.to_thread(self.store.end_session, session_id, time.time())
        for e in events:
            self.publish(e)

    async def stats(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "incarnation": self.incarnation,
            "sessions": len(self._sessions),
            "connections": sum(s.connection_count for s in self._sessions.values()),
            "events": self.log.head,
            "commit_batches": self.committer.batches,
            "committed": self.committer.committed,
        }


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)
class HostActor:
    """The Ray actor around `Host`. Errors cross as `ConfideError`s (they pickle)."""

    def __init__(self, settings: dict[str, Any], index: int) -> None:
        logging.basicConfig(level=logging.INFO)
        self._host = Host(Settings(**settings), index)

    async def call(self, op: str, *args: Any) -> Any:
        method = getattr(self._host, op, None)
        if method is None or op.startswith("_"):
            raise NotFound("no such host operation")
        try:
            return await method(*args)
        except ConfideError:
            raise
        except Exception:
            log.exception("host operation %s failed", op)
            raise

    async def poll(self, incarnation: str | None, cursor: int, timeout: float) -> dict[str, Any]:
        return await self._host.poll(incarnation, cursor, timeout)
