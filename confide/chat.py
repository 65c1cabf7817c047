"""The chat session entity: membership, ordering, idempotency and resume rules (sans-I/O).

The host actor owns the I/O: it loads the `SessionRecord`, commits the messages this
entity accepts before acking and publishing them, and serves history from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from confide.analytics import SessionActivity
from confide.auth import Principal
from confide.errors import CloseCode, CloseConnection, Forbidden
from confide.events import Event
from confide.protocol import ChatMessage, Ended, Presence, Resume, Status, StatusEvent
from confide.store.base import SessionRecord, StoredMessage

IDEMPOTENCY_CACHE = 4096


@dataclass
class _Conn:
    user: str
    role: str
    status: Status = "online"


@dataclass(frozen=True)
class ResumePlan:
    """What a joining connection is owed: replay (after, upto] when `recovered`."""

    recovered: bool
    replay_after: int | None
    upto: int


@dataclass
class ChatSession:
    record: SessionRecord
    #: The last offset given to a message (it may still be committing).
    last_offset: int = 0
    #: The last offset known durable and published: what joins and resumes are told.
    committed_offset: int = 0
    first_offset: int = 1
    ended: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    activity: SessionActivity = field(default_factory=SessionActivity)
    #: True while every retained (sender, id) is in the idempotency cache.
    ids_complete: bool = False
    _conns: dict[str, _Conn] = field(default_factory=dict)
    _ids: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)

    @classmethod
    def load(cls, record: SessionRecord) -> ChatSession:
        return cls(
            record=record,
            last_offset=record.last_offset,
            committed_offset=record.last_offset,
            first_offset=record.first_offset,
            ended=record.ended_at is not None,
            config=dict(record.config),
        )

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def epoch(self) -> str:
        return self.record.epoch

    @property
    def topic(self) -> str:
        return f"chat:{self.session_id}"

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # ------------------------------------------------------------ membership

    def members(self) -> list[dict[str, str]]:
        by_user: dict[str, _Conn] = {}
        for c in self._conns.values():
            by_user.setdefault(c.user, c)
        return [{"user": c.user, "role": c.role, "status": c.status} for c in by_user.values()]

    def _online(self, user: str) -> bool:
        return any(c.user == user for c in self._conns.values())

    def join(
        self, conn_id: str, who: Principal, resume: Resume | None, quiet: bool = False
    ) -> tuple[dict[str, Any], ResumePlan, list[Event]]:
        """Attach a connection: its welcome fields, what to replay, and presence events."""
        if not who.may_join(self.session_id):
            raise CloseConnection(CloseCode.FORBIDDEN, "not a member of this session")
        if self.ended:
            raise CloseConnection(CloseCode.SESSION_ENDED, "session ended")
        first_of_user = not self._online(who.user)
        self._conns[conn_id] = _Conn(who.user, who.role)
        plan = self.plan_resume(resume)
        welcome = {
            "session_id": self.session_id,
            "epoch": self.epoch,
            "offset": self.committed_offset,
            "members": self.members(),
            "recovered": plan.recovered,
        }
        events = []
        if first_of_user and not quiet:
            events.append(self._presence("join", who.user))
        return welcome, plan, events

    def plan_resume(self, resume: Resume | None) -> ResumePlan:
        if resume is None:
            return ResumePlan(True, None, self.committed_offset)
        known = (
            resume.epoch == self.epoch
            and self.first_offset - 1 <= resume.offset <= self.committed_offset
        )
        if not known:
            return ResumePlan(False, None, self.committed_offset)
        return ResumePlan(True, resume.offset, self.committed_offset)

    def leave(self, conn_id: str) -> list[Event]:
        conn = self._conns.pop(conn_id, None)
        if conn is None or self._online(conn.user):
            return []
        return [self._presence("leave", conn.user)]

    def connection_user(self, conn_id: str) -> str | None:
        """The user of an attached connection (None when it is not attached)."""
        conn = self._conns.get(conn_id)
        return conn.user if conn is not None else None

    def connections_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(conn_id, user) of the connections whose id starts with `prefix`."""
        return [(c, conn.user) for c, conn in self._conns.items() if c.startswith(prefix)]

    def carry_connections(self, previous: ChatSession) -> None:
        """Keep the connections of the entity this one replaces (reloaded after a failure)."""
        self._conns.update(previous._conns)

    def drop_connections(self, prefix: str) -> list[Event]:
        """Forget the connections whose id starts with `prefix` (a dead gateway replica)."""
        events: list[Event] = []
        for conn_id in [c for c in self._conns if c.startswith(prefix)]:
            events += self.leave(conn_id)
        return events

    def _presence(self, event: str, user: str) -> Event:
        frame = Presence.model_validate({"event": event, "user": user,
                                         "members": self.members()})
        return Event(self.topic, frame.dump())

    def _member(self, conn_id: str, who: Principal) -> _Conn:
        """The connection's membership; re-attached quietly when this entity was reloaded."""
        conn = self._conns.get(conn_id)
        if conn is None:
            if not who.may_join(self.session_id):
                raise Forbidden("not a member of this session")
            conn = self._conns[conn_id] = _Conn(who.user, who.role)
        return conn

    # -------------------------------------------------------------- messages

    def known_offset(self, sender: str, msg_id: str) -> int | None:
        """The offset of an earlier message with this (sender, id), if cached."""
        return self._ids.get((sender, msg_id))

    def needs_lookup(self, sender: str, msg_id: str) -> bool:
        """Whether only the store can tell if (sender, id) was accepted before: it is not
        in the idempotency cache, and the cache does not hold every retained id."""
        return self.known_offset(sender, msg_id) is None and not self.ids_complete

    def earlier_offset(self, sender: str, msg_id: str, stored: int | None = None) -> int | None:
        """The idempotency decision: the offset a retry of (sender, id) is acked with again,
        or None for a new message. `stored` is the store's answer when it was asked (see
        `needs_lookup`); a twin accepted meanwhile wins over it."""
        offset = self.known_offset(sender, msg_id)
        if offset is None and stored is not None:
            self.remember(sender, msg_id, stored)
            offset = stored
        return offset

    def preload_ids(self, recent: list[tuple[str, str, int]]) -> None:
        """Fill the idempotency cache with the newest retained messages at load time.

        When they are all the retained messages, a cache miss needs no store lookup.
        """
        for sender, msg_id, offset in recent:
            self.remember(sender, msg_id, offset)
        self.ids_complete = len(recent) >= self.last_offset - self.first_offset + 1

    def remember(self, sender: str, msg_id: str, offset: int) -> None:
        self._ids[(sender, msg_id)] = offset
        self._ids.move_to_end((sender, msg_id))
        while len(self._ids) > IDEMPOTENCY_CACHE:
            self._ids.popitem(last=False)
            self.ids_complete = False

    def accept(self, conn_id: str, who: Principal, msg: ChatMessage, now: float) -> StoredMessage:
        """Order a new message: the next offset. The caller checked idempotency first."""
        conn = self._member(conn_id, who)
        if self.ended:
            raise CloseConnection(CloseCode.SESSION_ENDED, "session ended")
        self.last_offset += 1
        stored = StoredMessage(
            session_id=self.session_id,
            offset=self.last_offset,
            epoch=self.epoch,
            id=msg.id,
            sender=conn.user,
            ts=now,
            body=msg.body,
            encrypted=msg.encrypted,
        )
        self.remember(conn.user, msg.id, stored.offset)
        self.activity.message(conn.user, now)
        return stored

    def published(self, stored: StoredMessage) -> Event:
        return Event(self.topic, stored.frame())

    def committed(self, offset: int) -> None:
        """A message is durable and published (the host calls this in offset order)."""
        self.committed_offset = max(self.committed_offset, offset)

    def trimmed(self, retention: int) -> None:
        self.first_offset = max(self.first_offset, self.last_offset - retention + 1)

    # ---------------------------------------------------------------- status

    def set_status(
        self, conn_id: str, who: Principal, status: Status, now: float
    ) -> list[Event]:
        conn = self._member(conn_id, who)
        for c in self._conns.values():
            if c.user == conn.user:
                c.status = status
        frame = StatusEvent(user=conn.user, status=status, ts=now)
        return [Event(self.topic, frame.dump(), exclude_user=conn.user)]

    def end(self, conn_id: str, who: Principal) -> list[Event]:
        conn = self._member(conn_id, who)
        if conn.role != "therapist":
            raise Forbidden("only a therapist in the session may end it")
        self.ended = True
        frame = Ended(by=conn.user)
        return [Event(self.topic, frame.dump(), close_code=int(CloseCode.SESSION_ENDED))]

    def figures(self, now: float) -> dict[str, Any]:
        """The `session:<id>` analytics stream's figures."""
        return self.activity.figures(now, self.members())

    def history_bounds(self, before: int | None) -> int:
        """The exclusive upper offset of a history page."""
        top = self.committed_offset + 1
        return top if before is None else min(before, top)

