"""Pickle round trips of every core type that crosses a Ray boundary (DESIGN.md, "Conventions").

Ray pickles actor arguments, results and raised exceptions. Gateway → host: principals,
client frames (`ChatMessage`, `Resume`, `HistoryRequest`, ...), stream refs and notification
requests; host → gateway: events (long polls), answer frames, `ConfideError`s and
`CloseConnection`s; to the FHE workers and back: principals and `ConfideError`s as values;
to every actor: its settings, as a JSON dict. Store records are what hosts and workers
read and write. Each round trip keeps the type and every field, with its type.
"""

from __future__ import annotations

import dataclasses
import pickle
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from confide import errors, protocol
from confide.analytics import StreamRef, resolve
from confide.auth import Principal
from confide.config import Settings
from confide.errors import CloseCode, CloseConnection, ConfideError, Unauthorized
from confide.events import Event
from confide.inbox import NotificationRequest
from confide.protocol import (
    Ack,
    ChatMessage,
    Frame,
    HistoryRequest,
    MessageEvent,
    Resume,
)
from confide.store import FheKeyRecord, NotificationRecord, SessionRecord, StoredMessage
from confide.tokens import ROLES

T = TypeVar("T")

_fast = settings(max_examples=60, deadline=None, database=None)


def round_trip(obj: T) -> T:
    """`obj` pickled as Ray does (protocol 5) and loaded back: a new object of its type."""
    clone = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    assert clone is not obj
    assert type(clone) is type(obj)
    return clone


def state(obj: object) -> dict[str, Any]:
    """Every field of a dataclass, a pydantic model (with its extras and which fields were
    set) or an exception (its args and attributes)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, BaseModel):
        fields = {name: getattr(obj, name) for name in type(obj).model_fields}
        return fields | {"(extra)": obj.model_extra, "(set)": obj.model_fields_set}
    if isinstance(obj, BaseException):
        return {"(args)": obj.args, **vars(obj)}
    raise TypeError(f"no state rule for {type(obj).__name__}")


def assert_round_trips(obj: T) -> T:
    clone = round_trip(obj)
    before, after = state(obj), state(clone)
    assert after == before
    for name, value in before.items():  # e.g. a CloseCode must not come back as an int
        assert type(after[name]) is type(value), name
    if not isinstance(obj, BaseException):
        assert clone == obj
    return clone


def dataclass_of(cls: type[T], **known: st.SearchStrategy[Any]) -> st.SearchStrategy[T]:
    """Instances of a dataclass with every field drawn: from `known`, else from its type
    (so a field added later is covered too)."""
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls,
        **{
            f.name: known.get(f.name, st.from_type(hints[f.name]))
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.init
        },
    )


texts = st.text(max_size=40)
names = st.text(min_size=1, max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False)
optional_finite = st.none() | finite
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)
frame_ids = st.none() | st.text(max_size=128) | st.integers()


def all_subclasses(cls: type[T]) -> Iterator[type[T]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


# ------------------------------------------------------------------ who: principals


principals = dataclass_of(
    Principal,
    user=names,
    role=st.sampled_from(sorted(ROLES)),
    sessions=st.frozensets(names | st.just("*"), max_size=4),
    expires_at=finite,
)


@_fast
@given(principals, names)
def test_principal(who: Principal, session_id: str) -> None:
    clone = assert_round_trips(who)
    assert clone.may_join(session_id) == who.may_join(session_id)


# ------------------------------------------------------------------ events (long polls)


events = dataclass_of(
    Event,
    topic=names,
    frame=json_objects,
    exclude_user=st.none() | names,
    only_roles=st.none() | st.frozensets(st.sampled_from(sorted(ROLES))),
    only_user=st.none() | names,
    close_code=st.none() | st.sampled_from([int(c) for c in CloseCode]),
    seq=st.integers(min_value=0),
    size=st.integers(min_value=0),
)


@_fast
@given(events)
def test_event(event: Event) -> None:
    clone = assert_round_trips(event)
    for user, role in (("alice", "client"), ("tom", "therapist")):
        assert clone.for_connection(user, role) == event.for_connection(user, role)


@_fast
@given(st.lists(events, max_size=5), st.integers(min_value=0), st.booleans())
def test_a_poll_answer(batch: list[Event], cursor: int, lost: bool) -> None:
    answer: dict[str, Any] = {"incarnation": "abc", "events": batch, "cursor": cursor, "lost": lost}
    clone = round_trip(answer)
    assert clone == answer
    for sent, got in zip(batch, clone["events"], strict=True):
        assert_round_trips(sent)
        assert type(got) is Event


# ------------------------------------------------------------------ errors and closes


_confide_errors: list[type[ConfideError]] = [ConfideError, *all_subclasses(ConfideError)]
CONFIDE_ERRORS = sorted(
    (c for c in _confide_errors if c.__module__ == errors.__name__), key=lambda c: c.__name__
)


@pytest.mark.parametrize("cls", CONFIDE_ERRORS, ids=lambda c: c.__name__)
@_fast
@given(message=st.text(max_size=200), frame_id=frame_ids)
def test_confide_error(cls: type[ConfideError], message: str, frame_id: str | int | None) -> None:
    clone = assert_round_trips(cls(message, frame_id=frame_id))
    assert (clone.message, clone.frame_id, str(clone)) == (message, frame_id, message)
    assert (clone.code, clone.http_status) == (cls.code, cls.http_status)


def test_a_raised_error_round_trips_as_raised() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise errors.Forbidden("not a member", frame_id="m1") from None
    except ConfideError as e:
        raised = e
    clone = assert_round_trips(raised)
    assert isinstance(clone, errors.Forbidden) and clone.frame_id == "m1"
    assert clone.code is errors.ErrorCode.FORBIDDEN


def test_overloaded_keeps_its_status_and_code() -> None:
    clone = assert_round_trips(errors.Overloaded("busy"))
    assert isinstance(clone, errors.Internal)
    assert (clone.code, clone.http_status) == (errors.ErrorCode.OVERLOADED, 503)


#: How to make each `CloseConnection` from a close code and a reason.
CLOSES: dict[type[CloseConnection], Callable[[CloseCode, str], CloseConnection]] = {
    CloseConnection: CloseConnection,
    Unauthorized: lambda _code, reason: Unauthorized(reason) if reason else Unauthorized(),
}


def test_every_close_connection_type_is_covered() -> None:
    found = {c for c in all_subclasses(CloseConnection) if c.__module__ == errors.__name__}
    assert found | {CloseConnection} == set(CLOSES)


@pytest.mark.parametrize("cls", list(CLOSES), ids=lambda c: c.__name__)
@_fast
@given(code=st.sampled_from(list(CloseCode)), reason=st.just("") | st.text(max_size=120))
def test_close_connection(cls: type[CloseConnection], code: CloseCode, reason: str) -> None:
    original = CLOSES[cls](code, reason)
    clone = assert_round_trips(original)
    assert clone.close_code is original.close_code
    assert clone.reason == original.reason and str(clone) == str(original) == original.reason


def test_close_connection_default_reason() -> None:
    clone = assert_round_trips(CloseConnection(CloseCode.SESSION_ENDED))
    assert (clone.reason, str(clone)) == ("session ended", "session ended")
    assert assert_round_trips(Unauthorized()).close_code is CloseCode.UNAUTHORIZED


# ------------------------------------------------------------------ wire frames


#: At least one instance of every frame model, with optional fields both set and unset.
FRAMES: list[Frame] = [
    protocol.Resume(offset=0, epoch="e1"),
    protocol.Hello(type="hello"),
    protocol.Hello(
        type="hello", token="t", resume=protocol.Resume(offset=7, epoch="e2"), client="py/1"
    ),
    protocol.Ping(type="ping"),
    protocol.Ping(type="ping", id=3),
    protocol.EncryptedBody(ciphertext="AAE=", alg="ckks", key_id="k1", nonce="n"),
    protocol.Features(key_id="k1", ciphertext="AAE="),
    protocol.ChatMessage(type="message", id="m1", body={"text": "hi", "n": [1, 2.5, None]}),
    protocol.ChatMessage(
        type="message",
        id="m2",
        body={"ciphertext": "AAE=", "alg": "ckks", "key_id": "k1", "iv": "x"},
        encrypted=True,
    ),
    protocol.ChatMessage(
        type="message",
        id="m3",
        body={"text": "x", "features": {"key_id": "k1", "ciphertext": "AAE="}},
    ),
    protocol.StatusUpdate(type="status", status="typing"),
    protocol.HistoryRequest(type="history"),
    protocol.HistoryRequest(type="history", before=10, limit=500),
    protocol.End(type="end"),
    protocol.NotificationAck(type="ack", id="n1", state="read"),
    protocol.ListRequest(type="list"),
    protocol.ListRequest(type="list", state="all", limit=5, before="n9"),
    protocol.Subscribe(type="subscribe", stream="system"),
    protocol.Subscribe(type="subscribe", stream="fhe:mood", key_id="k1"),
    protocol.Unsubscribe(type="unsubscribe", stream="fhe:mood", key_id="k1"),
    protocol.Submit(type="submit", id="s1", stream="fhe:mood", key_id="k1", ciphertext="AAE="),
    protocol.Member(user="alice", role="client", status="online"),
    protocol.Welcome(user="alice", role="client", heartbeat_s=25.0),
    protocol.Welcome(
        user="tom",
        role="therapist",
        heartbeat_s=25.0,
        session_id="s1",
        epoch="e1",
        offset=4,
        members=[{"user": "tom", "role": "therapist", "status": "online"}],
        recovered=False,
    ),
    protocol.ChatWelcome(
        user="tom",
        role="therapist",
        heartbeat_s=25.0,
        session_id="s1",
        epoch="e1",
        offset=4,
        members=[protocol.Member(user="tom", role="therapist", status="online")],
        recovered=True,
    ),
    protocol.InboxWelcome(user="alice", role="client", heartbeat_s=25.0, pending=2, unread=3),
    protocol.Pong(),
    protocol.Pong(id="p1"),
    protocol.Ack(id="m1"),
    protocol.Ack(id="m1", offset=12),
    protocol.MessageEvent(
        session_id="s1",
        offset=1,
        epoch="e1",
        id="m1",
        sender="alice",
        ts=1.5,
        body={"text": "hi"},
        encrypted=False,
    ),
    protocol.StatusEvent(user="alice", status="away", ts=2.0),
    protocol.Presence(
        event="join",
        user="bob",
        members=[protocol.Member(user="bob", role="client", status="online")],
    ),
    protocol.History(messages=[], complete=True),
    protocol.History(
        messages=[
            protocol.MessageEvent(
                session_id="s1",
                offset=2,
                epoch="e1",
                id="m2",
                sender="bob",
                ts=3.0,
                body={"ciphertext": "AAE="},
                encrypted=True,
            )
        ],
        complete=False,
    ),
    protocol.Ended(by="tom"),
    protocol.Error(code="forbidden", message="no"),
    protocol.Error(code="invalid_message", message="invalid field(s): id", id=7),
    protocol.Notification(id="n1", kind="info", title="t", body="b", created_at=1.0),
    protocol.Notification(
        id="n2", kind="reminder", title="t", body="b", data={"at": 5}, created_at=1.0, state="sent"
    ),
    protocol.Notifications(
        items=[protocol.Notification(id="n1", kind="info", title="t", body="b", created_at=1.0)]
    ),
    protocol.Subscribed(stream="system"),
    protocol.Subscribed(stream="fhe:mood", key_id="k1"),
    protocol.Unsubscribed(stream="session:s1"),
    protocol.Metrics(stream="system", ts=1.0, data={"connections": {"chat": 3}}),
    protocol.Aggregate(stream="fhe:mood", key_id="k1", count=3, sum="AAE=", ts=1.0),
    protocol.Aggregate(stream="fhe:mood", key_id="k1", count=3, sum="AAE=", mean="AAI=", ts=1.0),
    protocol.Insight(for_offset=4, key_id="k1", model="mood", ciphertext="AAE="),
    # audit trail (REST answers that cross from a host to a gateway)
    protocol.AuditEvent(ts=1.0, actor="alice", action="session.join", target="s1",
                        outcome="ok"),
    protocol.AuditEvents(events=[protocol.AuditEvent(ts=1.0, actor="-", action="connect",
                                                     target="s1", outcome="unauthenticated")]),
]


def test_audit_query_and_records_cross_ray() -> None:
    from confide.audit import record

    assert_round_trips(protocol.AuditQuery(user="alice", session="s1", since=2.5, limit=10))
    assert_round_trips(protocol.AuditQuery())
    assert_round_trips(record(1.0, "alice", "key.fetch", "k1", "denied"))


def test_every_frame_model_has_an_example() -> None:
    models = {c for c in all_subclasses(Frame) if c.__module__ == protocol.__name__}
    assert models <= {type(f) for f in FRAMES}


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_frame(frame: Frame) -> None:
    clone = assert_round_trips(frame)
    assert clone.dump() == frame.dump()
    assert clone.to_json() == frame.to_json()


def test_a_batch_of_frames() -> None:
    assert round_trip(FRAMES) == FRAMES


epochs = st.text(max_size=64)
frame_texts = st.text(min_size=1, max_size=128)


@_fast
@given(
    msg_id=frame_texts,
    body=json_objects,
    resume=st.builds(Resume, offset=st.integers(min_value=0), epoch=epochs),
    history=st.builds(
        HistoryRequest,
        type=st.just("history"),
        before=st.none() | st.integers(min_value=1),
        limit=st.integers(min_value=1, max_value=500),
    ),
)
def test_client_frames_a_host_receives(
    msg_id: str, body: dict[str, Any], resume: Resume, history: HistoryRequest
) -> None:
    body.pop("features", None)  # a `features` body must be well formed (another example)
    message = ChatMessage(type="message", id=msg_id, body=body)
    assert assert_round_trips(message).body == body
    batch = round_trip([message, message])  # `chat_messages`: a connection's batch
    assert batch == [message, message] and all(type(m) is ChatMessage for m in batch)
    assert_round_trips(resume)
    assert_round_trips(history)


@_fast
@given(
    msg_id=texts,
    offset=st.none() | st.integers(),
    code=st.sampled_from([c.value for c in errors.ErrorCode]),
    message=texts,
    frame_id=frame_ids,
)
def test_answer_frames_a_host_returns(
    msg_id: str, offset: int | None, code: str, message: str, frame_id: str | int | None
) -> None:
    assert_round_trips(Ack(id=msg_id, offset=offset))
    assert_round_trips(protocol.Error(code=code, message=message, id=frame_id))


@_fast
@given(
    session_id=texts,
    offset=st.integers(),
    epoch=texts,
    msg_id=texts,
    sender=texts,
    ts=finite,
    body=json_objects,
    encrypted=st.booleans(),
)
def test_message_event(
    session_id: str,
    offset: int,
    epoch: str,
    msg_id: str,
    sender: str,
    ts: float,
    body: dict[str, Any],
    encrypted: bool,
) -> None:
    event = MessageEvent(
        session_id=session_id,
        offset=offset,
        epoch=epoch,
        id=msg_id,
        sender=sender,
        ts=ts,
        body=body,
        encrypted=encrypted,
    )
    assert assert_round_trips(event).dump() == event.dump()


# ------------------------------------------------------------------ notifications, streams


notification_requests = st.builds(
    NotificationRequest,
    user=st.text(min_size=1, max_size=128),
    kind=st.text(min_size=1, max_size=64),
    title=st.text(max_size=256),
    body=st.text(max_size=2000),
    data=json_objects,
    ttl_s=st.none() | st.floats(min_value=1e-3, max_value=365 * 24 * 3600),
)


@_fast
@given(notification_requests)
def test_notification_request(req: NotificationRequest) -> None:
    assert assert_round_trips(req).model_dump() == req.model_dump()


def test_notification_request_with_defaults() -> None:
    req = NotificationRequest(user="alice", kind="info", title="t", body="b")
    assert assert_round_trips(req).model_fields_set == {"user", "kind", "title", "body"}


stream_refs = dataclass_of(
    StreamRef,
    name=names,
    kind=st.sampled_from(["system", "session", "fhe"]),
    route=names,
    key_id=st.none() | names,
)


@_fast
@given(stream_refs)
def test_stream_ref(ref: StreamRef) -> None:
    assert assert_round_trips(ref).topic == ref.topic


@pytest.mark.parametrize(
    ("stream", "key_id"), [("system", None), ("session:s1", None), ("fhe:mood", "k1")]
)
def test_resolved_stream_refs(stream: str, key_id: str | None) -> None:
    admin = Principal("root", "admin", frozenset({"*"}), 1e12)
    ref = resolve(stream, admin, key_id)
    assert assert_round_trips(ref).topic == ref.topic


# ------------------------------------------------------------------ store records


stored_messages = dataclass_of(
    StoredMessage,
    session_id=names,
    offset=st.integers(min_value=1),
    epoch=texts,
    id=names,
    sender=names,
    ts=finite,
    body=json_objects,
    encrypted=st.booleans(),
)
session_records = dataclass_of(
    SessionRecord,
    session_id=names,
    epoch=texts,
    created_at=finite,
    last_offset=st.integers(min_value=0),
    first_offset=st.integers(min_value=1),
    ended_at=optional_finite,
    config=json_objects,
)
notification_records = dataclass_of(
    NotificationRecord,
    id=names,
    user=names,
    producer=names,
    kind=names,
    title=texts,
    body=texts,
    data=json_objects,
    created_at=finite,
    expires_at=optional_finite,
    state=st.sampled_from(["queued", "sent", "delivered", "read", "expired"]),
    sent_at=optional_finite,
    delivered_at=optional_finite,
    read_at=optional_finite,
    attempts=st.integers(min_value=0),
    idempotency_key=st.none() | texts,
)
fhe_key_records = dataclass_of(
    FheKeyRecord,
    key_id=names,
    owner=names,
    meta=json_objects,
    blobs=st.dictionaries(names, st.binary(max_size=256), max_size=4),
    created_at=finite,
)


@_fast
@given(stored_messages)
def test_stored_message(message: StoredMessage) -> None:
    assert assert_round_trips(message).frame() == message.frame()


@_fast
@given(session_records)
def test_session_record(record: SessionRecord) -> None:
    assert_round_trips(record)


@_fast
@given(notification_records)
def test_notification_record(record: NotificationRecord) -> None:
    clone = assert_round_trips(record)
    clone.attempts += 1  # a mutable record: the copy is independent
    assert record.attempts == clone.attempts - 1


@_fast
@given(fhe_key_records)
def test_fhe_key_record(record: FheKeyRecord) -> None:
    assert_round_trips(record)


# ------------------------------------------------------------------ settings


def test_settings_cross_as_a_json_dict(tmp_path: Path) -> None:
    """Actors get `settings.model_dump(mode="json")` and rebuild `Settings(**config)`."""
    original = Settings(
        data_dir=tmp_path,
        store=f"sqlite:///{tmp_path / 'c.db'}",
        hosts=3,
        jwt_public_key=tmp_path / "key.pem",
        jwt_audience="confide",
        rate_per_s=5.5,
        fhe_backend="numpy",
        tls_cert=None,
    )
    config = round_trip(original.model_dump(mode="json"))
    assert Settings(**config) == original
    assert assert_round_trips(original) == original
