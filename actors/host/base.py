"""The host's shared state: the store, the chat entity cache, the event log and its poll,
and the sweeper that evicts idle entities and reaps the connections of dead replicas."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from actors.fhe_streams import FheStreams
from actors.host.commit import GroupCommitter
from actors.host.messages import Polled
from confide.analytics import StreamRef, SystemStream, Throttle
from confide.audit import SESSION_LEAVE, AuditBuffer, Outcome, record
from confide.chat import IDEMPOTENCY_CACHE, ChatSession
from confide.coalesce import Coalescer
from confide.config import Settings
from confide.conncount import ConnectionCounts
from confide.errors import NotFound
from confide.events import Event, EventLog
from confide.inbox import Inbox
from confide.metrics import Window
from confide.store import SessionRecord, StoredMessage, open_store

log = logging.getLogger("confide.host")


class Clock(Protocol):
    """The host's time (the `time` module; tests inject one they can move forward)."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def perf_counter(self) -> float: ...


#: The host actor holding entity index k (another host's handle, for analytics reports).
PeerLookup = Callable[[int], Any]


@dataclass
class Watched:
    """An analytics stream served by this host, and who watches it."""

    ref: StreamRef
    conns: set[str]
    throttle: Throttle


class HostBase:
    """State and plumbing every kind of entity operation uses."""

    def __init__(
        self, settings: Settings, index: int, *, clock: Clock = time,
        peers: PeerLookup | None = None, background: bool = True,
    ) -> None:
        self.settings = settings
        self.index = index
        self.clock = clock
        self._peer_lookup = peers
        self._background_loops = background
        self.incarnation = uuid.uuid4().hex
        self.store = open_store(settings.store_url())
        self.log = EventLog(settings.event_buffer)
        self._wake: asyncio.Future[None] | None = None
        self._sessions: dict[str, ChatSession] = {}
        self._loading: dict[str, asyncio.Future[ChatSession]] = {}
        self._touched: dict[str, float] = {}
        self._inflight: dict[tuple[str, str, str], asyncio.Future[int]] = {}
        self._inboxes: dict[str, Inbox] = {}
        self._inbox_locks: dict[str, asyncio.Lock] = {}
        self.committer = GroupCommitter(self._write, self._published, self._reload)
        #: Connections of sessions dropped after a failed write, for their reload.
        self._carried: dict[str, ChatSession] = {}
        #: Gateway replicas reading this host, and when each last polled (monotonic).
        self._readers: dict[str, float] = {}
        self._loops: list[asyncio.Task[None]] = []
        self.system = SystemStream()
        self._streams: dict[str, Watched] = {}
        self._proc = Window()
        self.fhe = FheStreams(settings, self.store, self.publish)
        self.fhe.is_watched = self._streams.__contains__
        self._tasks: set[asyncio.Task[None]] = set()
        #: Open WebSockets of the users this host owns (PROTOCOL 1.1, per-user cap).
        self.connections = ConnectionCounts()
        #: Status events held back per (session, user): the latest wins (chat_status).
        self.statuses: Coalescer[tuple[str, str], Event] = Coalescer(
            settings.status_interval_s)
        #: Audit events waiting for their batched write (see AuditOps).
        self.audit_buffer = AuditBuffer()
        self._audit_lock = asyncio.Lock()
        self._audit_flushing = False
        self._audit_pruned = float("-inf")

    # ------------------------------------------------------------ event log

    def publish(self, event: Event) -> None:
        self.log.append(event)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _published(self, event: Event) -> None:
        """The group committer made a message durable: publish it, in offset order."""
        self.publish(event)
        session = self._sessions.get(event.topic.removeprefix("chat:"))
        if session is not None:
            session.committed(int(event.frame["offset"]))

    async def poll(
        self, reader: str, incarnation: str | None, cursor: int, timeout: float
    ) -> Polled:
        """Events after `cursor`, waiting up to `timeout` s for the first one.

        A reader of another incarnation (or a first reader) is answered at once with no
        events and the current head: it starts from there and resyncs from the store.
        Polls are also the gateway replica's lease on its connections (see `reap`).
        """
        self.start_loops()
        self._readers[reader] = self.clock.monotonic()
        if incarnation != self.incarnation:
            return Polled(self.incarnation, [], self.log.head, False)
        deadline = self.clock.monotonic() + timeout
        while self.log.head <= cursor:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            if self._wake is None or self._wake.done():
                self._wake = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._wake), remaining)
            except asyncio.TimeoutError:
                break
        events, lost = self.log.since(cursor)
        self._readers[reader] = self.clock.monotonic()
        return Polled(self.incarnation, events, events[-1].seq if events else cursor, lost)

    # ------------------------------------------------------ background loops

    def start_loops(self) -> None:
        """The sweeper and the analytics ticker (on timers; unit tests drive them)."""
        if self._background_loops and not self._loops:
            self._loops = [asyncio.create_task(self._sweep_loop()),
                           asyncio.create_task(self._tick_loop()),
                           asyncio.create_task(self._audit_loop())]

    # ------------------------------------------------------------ audit trail

    def audit(self, actor: str, action: str, target: str, outcome: Outcome = "ok") -> None:
        """Record an access event: a list append here, written with the next batch."""
        self.audit_buffer.add(record(self.clock.time(), actor, action, target, outcome))
        self._flush_when_full()

    def _flush_when_full(self) -> None:
        if self.audit_buffer.full_batch() and not self._audit_flushing:
            self._audit_flushing = True
            self.background(self.flush_audit())

    async def flush_audit(self) -> None:
        """Write the waiting audit events (AuditOps)."""

    async def _audit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.audit_flush_s)
            await self.flush_audit()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.entity_ttl_s,
                                    self.settings.poll_timeout_s))
            self.sweep()

    def sweep(self) -> None:
        """Reap dead replicas' connections; evict idle entities (their state is stored)."""
        now = self.clock.monotonic()
        self.reap(now)
        self.statuses.forget_before(now - self.statuses.interval)
        cutoff = now - self.settings.entity_ttl_s
        self.fhe.evict_idle(cutoff, set(self._streams))
        for sid in [s for s, t in self._touched.items() if t < cutoff]:
            session = self._sessions.get(sid)
            if session is not None and session.connection_count == 0:
                self._forget({sid})

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.tick()
            except Exception:  # analytics must never stop the host
                log.warning("analytics tick failed", exc_info=True)

    async def tick(self) -> None:
        """Once a second: analytics reports and due stream updates (see StreamOps)."""

    def reap(self, now: float) -> None:
        """Drop the connections of gateway replicas that stopped polling (they died)."""
        stale = [r for r, t in self._readers.items()
                 if now - t > 3 * self.settings.poll_timeout_s + 5]
        for reader in stale:
            del self._readers[reader]
            prefix = f"{reader}:"
            self.connections.drop_prefix(prefix)
            for session in self._sessions.values():
                for _, user in session.connections_with_prefix(prefix):
                    self.audit(user, SESSION_LEAVE, session.session_id)
                for e in session.drop_connections(prefix):
                    self.publish(e)
            for user, inbox in list(self._inboxes.items()):
                inbox.drop_connections(prefix)
                if not inbox.online:
                    del self._inboxes[user]
            for topic, watched in list(self._streams.items()):
                watched.conns.difference_update(
                    {c for c in watched.conns if c.startswith(prefix)})
                if not watched.conns:
                    del self._streams[topic]
            log.info("dropped the connections of a gateway replica that stopped polling")

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop every task of this host and close the store (tests, shutdown)."""
        tasks = [*self._loops, *self._tasks, *self.committer.tasks()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.flush_audit()
        except Exception:  # noqa: BLE001 - shutting down: the store may be gone
            log.warning("audit events could not be written at shutdown")
        self.store.close()

    def peer(self, index: int) -> Any:
        """The host actor with index `index` (None when it is this one)."""
        if index == self.index or self._peer_lookup is None:
            return None
        return self._peer_lookup(index)

    # ------------------------------------------------------------- entities

    def _reload(self, session_ids: set[str]) -> None:
        """A write failed: reload these sessions from the store, keeping who is connected."""
        for sid in session_ids:
            session = self._sessions.get(sid)
            if session is not None:
                self._carried[sid] = session
        self._forget(session_ids)

    def _forget(self, session_ids: set[str]) -> None:
        for sid in session_ids:
            self._sessions.pop(sid, None)
            self._touched.pop(sid, None)

    async def session(self, session_id: str, create: bool = True) -> ChatSession:
        """The session entity, loaded from the store on first use (created if `create`)."""
        found = self._sessions.get(session_id)
        if found is not None:
            self._touched[session_id] = self.clock.monotonic()
            return found
        loading = self._loading.get(session_id)
        if loading is not None:
            return await asyncio.shield(loading)
        fut: asyncio.Future[ChatSession] = asyncio.get_running_loop().create_future()
        self._loading[session_id] = fut
        try:
            loaded = await asyncio.to_thread(self._load_or_create, session_id, create)
            if loaded is None:
                raise NotFound("no such session")
            record, recent = loaded
            session = ChatSession.load(record)
            session.preload_ids(recent)
            previous = self._carried.pop(session_id, None)
            if previous is not None:
                session.carry_connections(previous)
            self._sessions[session_id] = session
            self._touched[session_id] = self.clock.monotonic()
            fut.set_result(session)
            return session
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters, if any, got it
            raise
        finally:
            del self._loading[session_id]

    def _load_or_create(
        self, session_id: str, create: bool
    ) -> tuple[SessionRecord, list[tuple[str, str, int]]] | None:
        record = self.store.load_session(session_id)
        if record is None and not create:
            return None
        if record is None:
            fresh = SessionRecord(session_id, uuid.uuid4().hex[:16], self.clock.time())
            record = self.store.create_session(fresh)
        return record, self.store.recent_ids(session_id, IDEMPOTENCY_CACHE)

    def _write(self, messages: list[StoredMessage]) -> None:
        self.store.append_messages(messages, self.settings.retention_messages)
