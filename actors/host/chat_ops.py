"""Chat operations of a host: join, ordered and durable messages, status, history, end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.fhe_streams import check_model_fits
from actors.host.base import HostBase
from actors.host.messages import ChatAnswer, ChatItem, JoinAnswer, Joined, JoinItem, LeaveItem
from confide import audit
from confide.auth import Principal
from confide.chat import ChatSession
from confide.errors import CloseConnection, ConfideError, Forbidden, Internal
from confide.events import Event
from confide.paging import newest_within, oldest_within
from confide.protocol import Ack, ChatMessage, Error, History, HistoryRequest, Resume, Status
from confide.store import StoredMessage

log = logging.getLogger("confide.host")

REPLAY_PAGE = 500


def _error(err: ConfideError, frame_id: str) -> Error:
    return Error(code=err.code.value, message=err.message, id=frame_id)


class ChatOps(HostBase):
    async def chat_join(
        self, session_id: str, conn_id: str, who: Principal, resume: Resume | None, quiet: bool
    ) -> Joined:
        session = await self.session(session_id)
        welcome, plan, events = session.join(conn_id, who, resume, quiet)
        if not quiet:  # a quiet join re-attaches a connection already recorded
            self.audit(who.user, audit.SESSION_JOIN, session_id)
        for e in events:
            self.publish(e)
        return Joined(welcome, plan.replay_after, plan.upto, bool(session.config.get("fhe")))

    async def chat_joins(self, items: list[JoinItem]) -> list[JoinAnswer]:
        """Joins of many connections (a gateway replica's batch): one answer each."""

        async def one(item: JoinItem) -> JoinAnswer:
            try:
                return await self.chat_join(item.session_id, item.conn_id, item.who,
                                             item.resume, item.quiet)
            except (ConfideError, CloseConnection) as e:
                return e

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def chat_leaves(self, items: list[LeaveItem]) -> list[None]:
        for item in items:
            await self.chat_leave(item.session_id, item.conn_id)
        return [None] * len(items)

    async def chat_replay(self, session_id: str, after: int, upto: int) -> list[dict[str, Any]]:
        """Stored messages in (after, upto], at most a page of them (in items and in
        bytes: `CONFIDE_HISTORY_MAX_BYTES`), oldest first; the caller asks on."""
        msgs = await asyncio.to_thread(
            self.store.messages_after, session_id, after, upto, REPLAY_PAGE
        )
        return oldest_within([m.frame() for m in msgs], self.settings.history_max_bytes)

    async def chat_leave(self, session_id: str, conn_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            user = session.connection_user(conn_id)
            if user is not None:
                self.audit(user, audit.SESSION_LEAVE, session_id)
            for e in session.leave(conn_id):
                self.publish(e)

    async def chat_batch(self, items: list[ChatItem]) -> list[ChatAnswer]:
        """Messages of many connections, each connection's in the order sent: one answer
        each (`ack`, `error`, or the close of a connection whose session ended). They are
        ordered one by one and committed together (one group commit)."""
        answers: list[ChatAnswer | asyncio.Future[Ack]] = []
        closed: dict[str, CloseConnection] = {}
        for item in items:
            if item.conn_id in closed:
                answers.append(closed[item.conn_id])
                continue
            try:
                answers.append(await self._admit(item.session_id, item.conn_id, item.who,
                                                 item.message))
            except ConfideError as e:
                answers.append(_error(e, item.message.id))
            except CloseConnection as e:  # the session ended: accept nothing more
                closed[item.conn_id] = e
                answers.append(e)
        results: list[ChatAnswer] = []
        for item, answer in zip(items, answers, strict=True):
            if isinstance(answer, asyncio.Future):
                try:
                    results.append(await answer)
                except ConfideError as e:
                    results.append(_error(e, item.message.id))
            else:
                results.append(answer)
        return results

    async def _admit(
        self, session_id: str, conn_id: str, who: Principal, msg: ChatMessage
    ) -> asyncio.Future[Ack]:
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
        found_offset: int | None = None
        if session.needs_lookup(sender, msg.id):
            found = await asyncio.to_thread(self.store.find_message, session_id, sender, msg.id)
            found_offset = found.offset if found is not None else None
        if self._sessions.get(session_id) is not session:
            # Reloaded meanwhile (a failed commit): start again on the fresh entity.
            return await self._admit(session_id, conn_id, who, msg)
        offset = session.earlier_offset(sender, msg.id, found_offset)
        if offset is not None:
            return asyncio.ensure_future(self._duplicate(key, msg.id, offset))
        started = self.clock.perf_counter()
        stored = session.accept(conn_id, who, msg, self.clock.time())
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        return asyncio.ensure_future(self._commit(session, stored, done, key, started, scored))

    async def _duplicate(self, key: tuple[str, str, str], msg_id: str, offset: int) -> Ack:
        pending = self._inflight.get(key)
        if pending is not None:
            await asyncio.shield(pending)
        return Ack(id=msg_id, offset=offset)

    async def _commit(
        self, session: ChatSession, stored: StoredMessage, done: asyncio.Future[int],
        key: tuple[str, str, str], started: float, scored: bytes | None,
    ) -> Ack:
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
        self._proc.add(self.clock.perf_counter() - started)
        if scored is not None:
            self.background(self.fhe.insight(session.topic, stored.offset, session.config,
                                             scored))
        session.trimmed(self.settings.retention_messages)
        return Ack(id=stored.id, offset=stored.offset)

    async def chat_status(
        self, session_id: str, conn_id: str, who: Principal, status: Status
    ) -> None:
        session = await self.session(session_id)
        for e in session.set_status(conn_id, who, status, self.clock.time()):
            # Coalesced per (session, user): at most one every CONFIDE_STATUS_INTERVAL_S,
            # the latest wins (members see every user's current status, not each change).
            key = (session_id, who.user)
            now, delay = self.statuses.offer(key, e, self.clock.monotonic())
            if now is not None:
                self.publish(now)
            elif delay is not None:
                asyncio.get_running_loop().call_later(delay, self._status_due, key)

    def _status_due(self, key: tuple[str, str]) -> None:
        event = self.statuses.take(key, self.clock.monotonic())
        if event is not None:
            self.publish(event)

    async def chat_history(self, session_id: str, req: HistoryRequest) -> History:
        session = await self.session(session_id)
        before = session.history_bounds(req.before)
        msgs = await asyncio.to_thread(
            self.store.messages_before, session_id, before, req.limit
        )
        # The newest of them within the byte budget; when some were left out, `complete`
        # is false and the client pages on with `before` (PROTOCOL.md, history).
        frames = newest_within([m.frame() for m in msgs], self.settings.history_max_bytes)
        complete = not frames or int(frames[0]["offset"]) <= session.first_offset
        return History.model_validate({"messages": frames, "complete": complete})

    async def chat_configure(
        self, session_id: str, who: Principal, fhe: dict[str, Any]
    ) -> dict[str, Any]:
        """A therapist of the session sets up encrypted insights under their own key."""
        if who.role != "therapist" or not who.may_join(session_id):
            raise Forbidden("only a therapist of the session may configure it")
        key = await self.fhe.key(str(fhe["key_id"]))
        if key.owner != who.user:
            raise Forbidden("insights must be under the configuring therapist's key")
        check_model_fits(fhe["model"], key.meta)
        session = await self.session(session_id)
        config = dict(session.config) | {"fhe": fhe}
        await asyncio.to_thread(self.store.set_session_config, session_id, config)
        session.config = config
        # Tell the gateways: connections already open may now take 8 MiB frames.
        self.publish(Event(session.topic, {}, control="large_frames"))
        return {"session_id": session_id, "fhe": fhe}

    async def chat_end(self, session_id: str, conn_id: str, who: Principal) -> None:
        session = await self.session(session_id)
        events = session.end(conn_id, who)  # from here on, no message is accepted
        pending = [f for k, f in self._inflight.items() if k[0] == session_id]
        await asyncio.gather(*pending, return_exceptions=True)  # `ended` comes after them
        await asyncio.to_thread(self.store.end_session, session_id, self.clock.time())
        self.audit(who.user, audit.SESSION_END, session_id)
        for e in events:
            self.publish(e)

