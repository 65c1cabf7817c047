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
from dataclasses import dataclass
from typing import Any

import ray
from ray.util import metrics as ray_metrics

from actors.commit import GroupCommitter
from actors.fhe_streams import FheStreams
from actors.routing import host_index, host_name
from confide import inbox
from confide.analytics import StreamRef, SystemStream, Throttle
from confide.auth import Principal
from confide.chat import IDEMPOTENCY_CACHE, ChatSession
from confide.config import Settings
from confide.errors import CloseConnection, ConfideError, Forbidden, Internal, NotFound
from confide.events import Event, EventLog
from confide.inbox import NotificationRequest
from confide.metrics import Window, rss_mb
from confide.protocol import ChatMessage, Error, HistoryRequest, Resume, Status
from confide.store import NotificationRecord, SessionRecord, StoredMessage, open_store

log = logging.getLogger("confide.host")

REPLAY_PAGE = 500


def _error(err: ConfideError, frame_id: str) -> dict[str, Any]:
    return Error(code=err.code.value, message=err.message, id=frame_id).dump()


@dataclass
class _Watched:
    """An analytics stream served by this host, and who watches it."""

    ref: StreamRef
    conns: set[str]
    throttle: Throttle


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
        self._inboxes: dict[str, set[str]] = {}
        self.committer = GroupCommitter(self._write, self._published, self._reload)
        #: Connections of sessions dropped after a failed write, for their reload.
        self._carried: dict[str, ChatSession] = {}
        self._inbox_locks: dict[str, asyncio.Lock] = {}
        #: Gateway replicas reading this host, and when each last polled (monotonic).
        self._readers: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.system = SystemStream()
        self._streams: dict[str, _Watched] = {}
        self._proc = Window()
        self._peers: dict[int, Any] = {}
        self._gauges: dict[str, Any] = {}
        self.fhe = FheStreams(settings, self.store, self.publish)
        self._tasks: set[asyncio.Task[None]] = set()

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
    ) -> dict[str, Any]:
        """Events after `cursor`, waiting up to `timeout` s for the first one.

        A reader of another incarnation (or a first reader) is answered at once with no
        events and the current head: it starts from there and resyncs from the store.
        Polls are also the gateway replica's lease on its connections (see `_reap`).
        """
        self._start_sweeper()
        self._readers[reader] = time.monotonic()
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
        self._readers[reader] = time.monotonic()
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
            self._ticker = asyncio.create_task(self._tick_loop())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.entity_ttl_s,
                                    self.settings.poll_timeout_s))
            self._reap(time.monotonic())
            cutoff = time.monotonic() - self.settings.entity_ttl_s
            self.fhe.evict_idle(cutoff, set(self._streams))
            for sid in [s for s, t in self._touched.items() if t < cutoff]:
                session = self._sessions.get(sid)
                if session is not None and session.connection_count == 0:
                    self._forget({sid})

    def _reap(self, now: float) -> None:
        """Drop the connections of gateway replicas that stopped polling (they died)."""
        stale = [r for r, t in self._readers.items()
                 if now - t > 3 * self.settings.poll_timeout_s + 5]
        for reader in stale:
            del self._readers[reader]
            prefix = f"{reader}:"
            for session in self._sessions.values():
                for e in session.drop_connections(prefix):
                    self.publish(e)
            for user, conns in list(self._inboxes.items()):
                conns.difference_update({c for c in conns if c.startswith(prefix)})
                if not conns:
                    del self._inboxes[user]
            for topic, watched in list(self._streams.items()):
                watched.conns.difference_update(
                    {c for c in watched.conns if c.startswith(prefix)})
                if not watched.conns:
                    del self._streams[topic]
            log.info("dropped the connections of a gateway replica that stopped polling")

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
            self._touched[session_id] = time.monotonic()
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
            self._touched[session_id] = time.monotonic()
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
            fresh = SessionRecord(session_id, uuid.uuid4().hex[:16], time.time())
            record = self.store.create_session(fresh)
        return record, self.store.recent_ids(session_id, IDEMPOTENCY_CACHE)

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
        """One message: its ack once it is durable (and published)."""
        return await (await self._admit(session_id, conn_id, who, msg))

    async def chat_messages(
        self, session_id: str, conn_id: str, who: Principal, msgs: list[ChatMessage]
    ) -> list[dict[str, Any]]:
        """A connection's messages in the order sent: one answer each, an `ack` or an
        `error` frame. They are ordered one by one and committed together."""
        answers: list[tuple[str, asyncio.Future[dict[str, Any]] | dict[str, Any]]] = []
        closing: CloseConnection | None = None
        for msg in msgs:
            try:
                answers.append((msg.id, await self._admit(session_id, conn_id, who, msg)))
            except ConfideError as e:
                answers.append((msg.id, _error(e, msg.id)))
            except CloseConnection as e:  # the session ended: accept nothing more
                closing = e
                break
        results: list[dict[str, Any]] = []
        for msg_id, answer in answers:
            try:
                results.append(answer if isinstance(answer, dict) else await answer)
            except ConfideError as e:
                results.append(_error(e, msg_id))
        if closing is not None:
            raise closing
        return results

    async def _admit(
        self, session_id: str, conn_id: str, who: Principal, msg: ChatMessage
    ) -> asyncio.Future[dict[str, Any]]:
        """Check and order a message; the returned future gives its ack once committed.

        Messages admitted one after the other are committed in that order.
        """
        session = await self.session(session_id)
        sender = who.user
        key = (session_id, sender, msg.id)
        features = msg.body.get("features")
        scored = (
            await self.fhe.check_features(session.config, features)
            if isinstance(features, dict) else None
        )
        found = None
        if session.known_offset(sender, msg.id) is None and not session.ids_complete:
            found = await asyncio.to_thread(self.store.find_message, session_id, sender, msg.id)
        if self._sessions.get(session_id) is not session:
            # Reloaded meanwhile (a failed commit): start again on the fresh entity.
            return await self._admit(session_id, conn_id, who, msg)
        offset = session.known_offset(sender, msg.id)  # a twin may have won meanwhile
        if offset is None and found is not None:
            session.remember(sender, msg.id, found.offset)
            offset = found.offset
        if offset is not None:
            return asyncio.ensure_future(self._duplicate(key, msg.id, offset))
        started = time.perf_counter()
        stored = session.accept(conn_id, who, msg, time.time())
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        return asyncio.ensure_future(self._commit(session, stored, done, key, started, scored))

    async def _duplicate(
        self, key: tuple[str, str, str], msg_id: str, offset: int
    ) -> dict[str, Any]:
        pending = self._inflight.get(key)
        if pending is not None:
            await asyncio.shield(pending)
        return {"type": "ack", "id": msg_id, "offset": offset}

    async def _commit(
        self, session: ChatSession, stored: StoredMessage, done: asyncio.Future[int],
        key: tuple[str, str, str], started: float, scored: bytes | None,
    ) -> dict[str, Any]:
        try:
            await self.committer.commit(stored, session.published(stored))
        except Exception:
            log.exception("commit failed for a message of session %s", session.session_id)
            done.set_exception(Internal("message could not be stored"))
            done.exception()
            raise Internal("message could not be stored") from None
        finally:
            self._inflight.pop(key, None)
        done.set_result(stored.offset)
        self._proc.add(time.perf_counter() - started)
        if scored is not None:
            self._background(self.fhe.insight(session.topic, stored.offset, session.config,
                                              scored))
        session.trimmed(self.settings.retention_messages)
        return {"type": "ack", "id": stored.id, "offset": stored.offset}

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

    async def chat_configure(
        self, session_id: str, who: Principal, fhe: dict[str, Any]
    ) -> dict[str, Any]:
        """A therapist of the session sets up encrypted insights under their own key."""
        if who.role != "therapist" or not who.may_join(session_id):
            raise Forbidden("only a therapist of the session may configure it")
        key = await self.fhe.key(str(fhe["key_id"]))
        if key.owner != who.user:
            raise Forbidden("insights must be under the configuring therapist's key")
        session = await self.session(session_id)
        config = dict(session.config) | {"fhe": fhe}
        await asyncio.to_thread(self.store.set_session_config, session_id, config)
        session.config = config
        # Tell the gateways: connections already open may now take 8 MiB frames.
        self.publish(Event(session.topic, {"type": "_config", "large_frames": True}))
        return {"session_id": session_id, "fhe": fhe}

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def chat_end(self, session_id: str, conn_id: str, who: Principal) -> None:
        session = await self.session(session_id)
        events = session.end(conn_id, who)  # from here on, no message is accepted
        pending = [f for k, f in self._inflight.items() if k[0] == session_id]
        await asyncio.gather(*pending, return_exceptions=True)  # `ended` comes after them
        await asyncio.to_thread(self.store.end_session, session_id, time.time())
        for e in events:
            self.publish(e)

    # -------------------------------------------------------- notifications

    def _inbox_topic(self, user: str) -> str:
        return f"inbox:{user}"

    def _inbox_lock(self, user: str) -> asyncio.Lock:
        """Inbox state changes of one user happen one at a time (read, then write)."""
        lock = self._inbox_locks.get(user)
        if lock is None:
            lock = self._inbox_locks[user] = asyncio.Lock()
        return lock

    async def inbox_post(
        self, producer: Principal, req: NotificationRequest, idempotency_key: str | None
    ) -> dict[str, Any]:
        inbox.check_producer(producer.role)
        rec = inbox.new_record(req, producer.user, idempotency_key, time.time())
        stored, created = await asyncio.to_thread(self.store.insert_notification, rec)
        if created and self._inboxes.get(stored.user):
            async with self._inbox_lock(stored.user):
                # A connecting tab may have sent (and the user acked) it meanwhile.
                fresh = await asyncio.to_thread(self.store.get_notification, stored.id)
                if fresh is not None and fresh.state == "queued":
                    await self._send_live(fresh)
        return {"id": stored.id, "state": "queued"}

    async def _send_live(self, rec: NotificationRecord) -> None:
        inbox.mark_sent(rec, time.time())
        await asyncio.to_thread(self.store.update_notifications, [rec])
        self.publish(Event(self._inbox_topic(rec.user), inbox.frame(rec)))

    async def inbox_attach(self, user: str, conn_id: str) -> dict[str, Any]:
        """A connection opens: counts, then every undelivered notification, oldest first."""
        self._inboxes.setdefault(user, set()).add(conn_id)
        now = time.time()
        async with self._inbox_lock(user):
            records = await asyncio.to_thread(self.store.undelivered_notifications, user, now)
            for rec in records:
                inbox.mark_sent(rec, now)
            if records:
                await asyncio.to_thread(self.store.update_notifications, records)
            pending, unread = await asyncio.to_thread(self.store.notification_counts, user, now)
        items = [inbox.frame(rec) for rec in records]
        return {"pending": pending, "unread": unread, "items": items}

    async def inbox_detach(self, user: str, conn_id: str) -> None:
        conns = self._inboxes.get(user)
        if conns is not None:
            conns.discard(conn_id)
            if not conns:
                del self._inboxes[user]

    async def inbox_ack(self, user: str, notification_id: str, state: str) -> None:
        async with self._inbox_lock(user):
            rec = await asyncio.to_thread(self.store.get_notification, notification_id)
            if rec is None:
                raise NotFound("no such notification")
            if inbox.acknowledge(rec, user, state, time.time()):
                await asyncio.to_thread(self.store.update_notifications, [rec])

    async def inbox_list(
        self, user: str, state: str, limit: int, before: str | None
    ) -> dict[str, Any]:
        records = await asyncio.to_thread(
            self.store.list_notifications, user, state == "unread", limit, before
        )
        return {"type": "notifications", "items": [inbox.frame(r, True) for r in records]}

    async def notification_status(self, notification_id: str, who: Principal) -> dict[str, Any]:
        rec = await asyncio.to_thread(self.store.get_notification, notification_id)
        if rec is None or not inbox.visible_to(rec, who.user):
            raise NotFound("no such notification")
        if inbox.expired(rec, time.time()):
            inbox.mark_expired(rec)  # shown as such; stored so on the user's next connect
        return inbox.status(rec)

    # ------------------------------------------------------------ analytics

    async def stream_subscribe(
        self, ref: StreamRef, conn_id: str, who: Principal
    ) -> dict[str, Any] | None:
        """Count a subscriber; the stream's snapshot (`metrics`, or the latest `aggregate`
        of an `fhe:` stream, None before its first contribution)."""
        if ref.kind == "fhe":
            await self.fhe.check_owner(ref, who)
        figures = None if ref.kind == "fhe" else await self._figures(ref)
        watched = self._streams.get(ref.topic)
        if watched is None:
            watched = self._streams[ref.topic] = _Watched(ref, set(), Throttle())
            if figures is not None:
                watched.throttle.due(figures, time.time())  # the snapshot counts as sent
        watched.conns.add(conn_id)
        if figures is None:
            return await self.fhe.frame(ref)
        return {"type": "metrics", "stream": ref.name, "ts": time.time(), "data": figures}

    async def fhe_submit(self, ref: StreamRef, ciphertext: str) -> None:
        await self.fhe.submit(ref, ciphertext)

    async def fhe_key_deleted(self, key_id: str) -> None:
        self.fhe.forget_key(key_id)

    async def stream_unsubscribe(self, ref: StreamRef, conn_id: str) -> None:
        watched = self._streams.get(ref.topic)
        if watched is not None:
            watched.conns.discard(conn_id)
            if not watched.conns:
                del self._streams[ref.topic]

    async def stream_report(self, source: str, kind: str, data: dict[str, Any]) -> None:
        self.system.report(source, kind, data, time.time())

    async def _figures(self, ref: StreamRef) -> dict[str, Any]:
        now = time.time()
        if ref.kind == "system":
            return self.system.snapshot(now)
        if ref.kind == "session":
            session = await self.session(ref.route.removeprefix("chat:"), create=False)
            return session.figures(now)
        raise NotFound("no such stream")

    def host_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sessions": len(self._sessions),
            "inbox_users": len(self._inboxes),
            "committed": self.committer.committed,
            "proc_count": self._proc.count,
            "rss_mb": rss_mb(),
        }
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            v = self._proc.quantile(q)
            out[f"proc_{name}_ms"] = v * 1000 if v is not None else None
        return out

    def _peer(self, entity: str) -> Any:
        """The host actor holding `entity` (None when it is this one)."""
        index = host_index(entity, self.settings.hosts)
        if index == self.index:
            return None
        if index not in self._peers:
            self._peers[index] = ray.get_actor(
                host_name(index), namespace=self.settings.ray_namespace
            )
        return self._peers[index]

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._tick()
            except Exception:  # analytics must never stop the host
                log.warning("analytics tick failed", exc_info=True)

    def _export(self, stats: dict[str, Any]) -> None:
        """Host figures for Prometheus, cluster-wide through `ray.util.metrics`."""
        if not self._gauges:
            for name, doc in (("sessions", "Chat sessions in memory"),
                              ("inbox_users", "Users with an open inbox connection"),
                              ("committed", "Chat messages committed since start"),
                              ("proc_p99_ms", "Message processing time p99 (ms)"),
                              ("rss_mb", "Resident memory (MiB)")):
                self._gauges[name] = ray_metrics.Gauge(
                    f"confide_host_{name}", doc, tag_keys=("host",)
                )
        for name, gauge in self._gauges.items():
            if stats.get(name) is not None:
                gauge.set(float(stats[name]), tags={"host": str(self.index)})

    async def _tick(self) -> None:
        stats = self.host_stats()
        self._export(stats)
        peer = self._peer("stream:system")
        if peer is None:
            self.system.report(f"host-{self.index}", "host", stats, time.time())
        else:
            peer.call.remote("stream_report", f"host-{self.index}", "host", stats)
        now = time.time()
        fhe_topics = {t for t, w in self._streams.items() if w.ref.kind == "fhe"}
        if fhe_topics:
            await self.fhe.publish_due(fhe_topics, now)
        for topic, watched in list(self._streams.items()):
            if topic in fhe_topics:
                continue
            figures = await self._figures(watched.ref)
            if watched.throttle.due(figures, now):
                frame = {"type": "metrics", "stream": watched.ref.name, "ts": now,
                         "data": figures}
                self.publish(Event(topic, frame))

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


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)  # type: ignore[call-overload]
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

    async def poll(
        self, reader: str, incarnation: str | None, cursor: int, timeout: float
    ) -> dict[str, Any]:
        return await self._host.poll(reader, incarnation, cursor, timeout)
