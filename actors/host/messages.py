"""What crosses the Ray boundary between a gateway replica and a host actor.

Every type here is a plain frozen dataclass of picklable fields (frames as pydantic
models from `confide.protocol`); each has a pickle round-trip test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.blobs import Blob
from confide.analytics import StreamRef
from confide.auth import Principal
from confide.errors import CloseConnection, ConfideError
from confide.events import Event
from confide.protocol import Ack, ChatMessage, Error, Resume

#: A chat message's answer: its ack, an error frame, or the close of its connection.
ChatAnswer = Ack | Error | CloseConnection


@dataclass(frozen=True)
class ChatItem:
    """One chat message of one connection, in a batch of many connections' messages."""

    session_id: str
    conn_id: str
    who: Principal
    message: ChatMessage


@dataclass(frozen=True)
class JoinItem:
    """One connection joining (or, `quiet`, re-attaching to) a chat session."""

    session_id: str
    conn_id: str
    who: Principal
    resume: Resume | None
    quiet: bool


@dataclass(frozen=True)
class SubmitItem:
    """One encrypted contribution of one connection (its bytes in the object store)."""

    ref: StreamRef
    blob: Blob
    user: str | None
    submit_id: str | None


#: A contribution's answer: None once it is counted, else why not.
SubmitAnswer = ConfideError | None


@dataclass(frozen=True)
class LeaveItem:
    """One connection leaving a chat session."""

    session_id: str
    conn_id: str


@dataclass(frozen=True)
class Joined:
    """A connection joined a session: its `welcome` fields and what it is owed."""

    welcome: dict[str, Any]
    #: Replay stored messages in (replay_after, upto] (None: nothing to replay).
    replay_after: int | None
    upto: int
    #: The session takes 8 MiB frames (encrypted insights are configured).
    large_frames: bool


#: A join's answer: the joined session, or why it was refused.
JoinAnswer = Joined | ConfideError | CloseConnection


@dataclass(frozen=True)
class Attached:
    """An inbox connection opened: counts and every undelivered notification."""

    pending: int
    unread: int
    #: `notification` frames, oldest first.
    items: list[dict[str, Any]]


@dataclass(frozen=True)
class Polled:
    """A long poll's answer: events after the reader's cursor."""

    incarnation: str
    events: list[Event]
    cursor: int
    #: The log no longer holds events the reader had not seen: resync from the store.
    lost: bool
