"""Wire models of protocol v1 (PROTOCOL.md): parsing client frames, dumping server frames."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confide.chat import ChatSession
from confide.errors import ErrorCode, InvalidMessage, UnknownType
from confide.protocol import (
    SUBPROTOCOL,
    ChatMessage,
    End,
    Error,
    HistoryRequest,
    ListRequest,
    Metrics,
    NotificationAck,
    Ping,
    Pong,
    StatusUpdate,
    Submit,
    Subscribe,
    Unsubscribe,
    Welcome,
    parse_client_frame,
    parse_hello,
    parse_server_frame,
)
from confide.store.base import SessionRecord, StoredMessage

SECRET = "SECRET-VALUE-7f3a"


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def test_subprotocol_name() -> None:
    assert SUBPROTOCOL == "confide.v1"


# ------------------------------------------------------------------ hello (first frame)


def test_hello_minimal() -> None:
    hello = parse_hello(frame(type="hello"))
    assert hello is not None
    assert hello.token is None and hello.resume is None and hello.client is None


def test_hello_full_and_unknown_fields_ignored() -> None:
    hello = parse_hello(
        frame(type="hello", token="t.o.k", resume={"offset": 41, "epoch": "e1"},
              client="sdk/1.0", future_field=[1, 2])
    )
    assert hello is not None
    assert hello.token == "t.o.k"
    assert hello.resume is not None
    assert (hello.resume.offset, hello.resume.epoch) == (41, "e1")
    assert hello.client == "sdk/1.0"


def test_hello_accepts_bytes() -> None:
    hello = parse_hello(frame(type="hello", token="abc").encode())
    assert hello is not None and hello.token == "abc"


@pytest.mark.parametrize(
    "text",
    [
        frame(type="ping"),
        frame(type="message", id="m", body={}),
        frame(token="abc"),  # no type
        frame(type=None),
        frame(type=["hello"]),
        "[]",
        '"hello"',
        "null",
        "not json",
        "",
        b"\xff\xfe",
        frame(type="hello", token=5),
        frame(type="hello", token="x" * 8193),
        frame(type="hello", resume={"offset": -1, "epoch": "e"}),
        frame(type="hello", resume={"offset": 1}),
        frame(type="hello", resume={"offset": 1, "epoch": "e" * 65}),
        frame(type="hello", resume="41"),
        frame(type="hello", client="c" * 129),
        "[" * 5000,
    ],
)
def test_first_frame_not_a_valid_hello_is_none(text: str | bytes) -> None:
    assert parse_hello(text) is None


# ------------------------------------------------------------------ framing errors


@pytest.mark.parametrize("text", ["not json", "{", "", "[1, 2]", "42", '"s"', "null", b"\xc3\x28"])
def test_malformed_frame_is_invalid_message(text: str | bytes) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_client_frame(text, "chat")
    assert err.value.code == ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("value", [None, 5, ["ping"], {"a": 1}, True])
def test_type_must_be_a_string(value: Any) -> None:
    with pytest.raises(InvalidMessage):
        parse_client_frame(json.dumps({"type": value, "id": "f1"}), "chat")


def test_missing_type_is_invalid_and_keeps_frame_id() -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_client_frame(frame(id="f7", body={}), "chat")
    assert err.value.frame_id == "f7"


@pytest.mark.parametrize("depth", [1000, 5000, 30_000])
def test_deeply_nested_json_is_invalid_message(depth: int) -> None:
    """Fits in a 64 KiB frame; must not escape as RecursionError (an internal error)."""
    nested = '{"type":"ping","x":' + "[" * depth + "]" * depth + "}"
    with pytest.raises(InvalidMessage):
        parse_client_frame(nested, "chat")
    with pytest.raises(InvalidMessage):
        parse_client_frame("[" * depth, "chat")


# ------------------------------------------------------------------ unknown types


@pytest.mark.parametrize(
    ("endpoint", "type_"),
    [
        ("chat", "subscribe"),
        ("chat", "ack"),
        ("chat", "hello"),  # only the first frame is a hello
        ("chat", "MESSAGE"),
        ("notifications", "message"),
        ("notifications", "end"),
        ("analytics", "message"),
        ("analytics", "list"),
        ("chat", SECRET),
    ],
)
def test_unknown_type_is_unknown_type_error(endpoint: Any, type_: str) -> None:
    with pytest.raises(UnknownType) as err:
        parse_client_frame(frame(type=type_, id="f1"), endpoint)
    assert err.value.code == ErrorCode.UNKNOWN_TYPE
    assert err.value.frame_id == "f1"
    assert SECRET not in err.value.message


def test_unknown_type_is_not_a_close() -> None:
    """An error frame, not a close: the exception is recoverable (a ConfideError)."""
    from confide.errors import CloseConnection, ConfideError

    with pytest.raises(ConfideError) as err:
        parse_client_frame(frame(type="nope"), "chat")
    assert not isinstance(err.value, CloseConnection)


# ------------------------------------------------------------------ per-endpoint frames


@pytest.mark.parametrize(
    ("endpoint", "data", "model"),
    [
        ("chat", {"type": "ping"}, Ping),
        ("chat", {"type": "ping", "id": 3}, Ping),
        ("chat", {"type": "message", "id": "m1", "body": {"text": "hi"}}, ChatMessage),
        ("chat", {"type": "status", "status": "typing"}, StatusUpdate),
        ("chat", {"type": "history"}, HistoryRequest),
        ("chat", {"type": "end"}, End),
        ("notifications", {"type": "ping", "id": "p"}, Ping),
        ("notifications", {"type": "ack", "id": "n1", "state": "read"}, NotificationAck),
        ("notifications", {"type": "list"}, ListRequest),
        ("analytics", {"type": "ping"}, Ping),
        ("analytics", {"type": "subscribe", "stream": "system"}, Subscribe),
        ("analytics", {"type": "unsubscribe", "stream": "system"}, Unsubscribe),
        (
            "analytics",
            {"type": "submit", "id": "s1", "stream": "fhe:x", "key_id": "k", "ciphertext": "AA=="},
            Submit,
        ),
    ],
)
def test_valid_frames_parse_to_their_model(
    endpoint: Any, data: dict[str, Any], model: type
) -> None:
    parsed = parse_client_frame(json.dumps({**data, "unknown_extra": {"x": 1}}), endpoint)
    assert type(parsed) is model
    assert not hasattr(parsed, "unknown_extra")


def test_ping_id_keeps_its_type() -> None:
    assert parse_client_frame(frame(type="ping", id=7), "chat").id == 7  # type: ignore[attr-defined]
    assert parse_client_frame(frame(type="ping", id="7"), "chat").id == "7"  # type: ignore[attr-defined]


def test_message_defaults_to_plaintext() -> None:
    msg = parse_client_frame(frame(type="message", id="m1", body={"t": 1}), "chat")
    assert isinstance(msg, ChatMessage)
    assert msg.encrypted is False
    assert msg.body == {"t": 1}


def test_history_defaults() -> None:
    req = parse_client_frame(frame(type="history"), "chat")
    assert isinstance(req, HistoryRequest)
    assert (req.before, req.limit) == (None, 50)


@pytest.mark.parametrize("limit", [1, 50, 500])
def test_history_limit_in_bounds(limit: int) -> None:
    req = parse_client_frame(frame(type="history", limit=limit, before=10), "chat")
    assert isinstance(req, HistoryRequest)
    assert (req.limit, req.before) == (limit, 10)


@pytest.mark.parametrize(
    "fields",
    [{"limit": 0}, {"limit": 501}, {"limit": -5}, {"before": 0}, {"before": -1},
     {"limit": "many"}, {"before": "x"}, {"limit": [1]}, {"limit": None}],
)
def test_history_out_of_bounds_is_invalid(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage):
        parse_client_frame(frame(type="history", **fields), "chat")


def test_list_defaults_and_bounds() -> None:
    req = parse_client_frame(frame(type="list"), "notifications")
    assert isinstance(req, ListRequest)
    assert (req.state, req.limit, req.before) == ("unread", 50, None)
    for bad in ({"limit": 0}, {"limit": 501}, {"state": "read"}, {"before": "x" * 65}):
        with pytest.raises(InvalidMessage):
            parse_client_frame(frame(type="list", **bad), "notifications")


@pytest.mark.parametrize(
    "data",
    [
        {"type": "message", "body": {}},  # no id
        {"type": "message", "id": "", "body": {}},
        {"type": "message", "id": "x" * 129, "body": {}},
        {"type": "message", "id": 5, "body": {}},
        {"type": "message", "id": "m"},  # no body
        {"type": "message", "id": "m", "body": SECRET},
        {"type": "message", "id": "m", "body": [SECRET]},
        {"type": "message", "id": "m", "body": {}, "encrypted": {"x": SECRET}},
        {"type": "status", "status": "sleeping"},
        {"type": "status"},
    ],
)
def test_chat_wrong_fields_are_invalid_without_echo(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_client_frame(json.dumps(data), "chat")
    assert SECRET not in err.value.message
    assert "sleeping" not in err.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"ciphertext": SECRET, "alg": "x25519-aes"},  # no key_id
        {"ciphertext": SECRET, "key_id": "k1"},  # no alg
        {"alg": "x25519-aes", "key_id": "k1"},  # no ciphertext
        {"text": SECRET},
        {"ciphertext": 5, "alg": "a", "key_id": "k"},
        {"ciphertext": SECRET, "alg": "a" * 65, "key_id": "k"},
        {"ciphertext": SECRET, "alg": "a", "key_id": "k" * 129},
    ],
)
def test_encrypted_body_needs_ciphertext_alg_key_id(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_client_frame(
            frame(type="message", id="m9", body=body, encrypted=True), "chat"
        )
    assert err.value.frame_id == "m9"
    assert SECRET not in err.value.message


def test_encrypted_body_ok_and_extra_fields_kept() -> None:
    body = {"ciphertext": "QUJD", "alg": "aes-gcm", "key_id": "k1", "nonce": "bm9uY2U="}
    msg = parse_client_frame(frame(type="message", id="m", body=body, encrypted=True), "chat")
    assert isinstance(msg, ChatMessage)
    assert msg.encrypted is True
    assert msg.body == body  # stored and forwarded untouched


def test_plaintext_body_need_not_look_encrypted() -> None:
    msg = parse_client_frame(frame(type="message", id="m", body={"text": "hi"}), "chat")
    assert isinstance(msg, ChatMessage) and msg.body == {"text": "hi"}


def test_features_need_key_id_and_ciphertext() -> None:
    ok = {"text": "x", "features": {"key_id": "k", "ciphertext": "QQ=="}}
    assert isinstance(parse_client_frame(frame(type="message", id="m", body=ok), "chat"),
                      ChatMessage)
    for features in ({"key_id": "k"}, {"ciphertext": SECRET}, SECRET, {"key_id": 1,
                                                                      "ciphertext": "x"}):
        with pytest.raises(InvalidMessage) as err:
            parse_client_frame(
                frame(type="message", id="m", body={"features": features}), "chat"
            )
        assert SECRET not in err.value.message


@pytest.mark.parametrize(
    ("endpoint", "data"),
    [
        ("notifications", {"type": "ack", "id": "n", "state": "seen"}),
        ("notifications", {"type": "ack", "id": "", "state": "read"}),
        ("notifications", {"type": "ack", "state": "read"}),
        ("analytics", {"type": "subscribe"}),
        ("analytics", {"type": "subscribe", "stream": ""}),
        ("analytics", {"type": "submit", "id": "s", "stream": "fhe:x", "ciphertext": SECRET}),
        ("analytics", {"type": "submit", "id": "s", "stream": "fhe:x", "key_id": "k"}),
    ],
)
def test_other_endpoints_wrong_fields_invalid(endpoint: Any, data: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_client_frame(json.dumps(data), endpoint)
    assert SECRET not in err.value.message


def test_invalid_message_names_fields_not_values() -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_client_frame(frame(type="history", limit=SECRET), "chat")
    assert "limit" in err.value.message
    assert SECRET not in err.value.message


def test_frame_id_only_echoed_when_a_short_string() -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_client_frame(frame(type="status", status="bad", id="x" * 129), "chat")
    assert err.value.frame_id is None


# ------------------------------------------------------------------ property: parse never crashes

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_types = st.sampled_from(
    ["hello", "ping", "message", "status", "history", "end", "ack", "list", "subscribe",
     "unsubscribe", "submit", "bogus"]
)
_keys = st.sampled_from(
    ["id", "body", "encrypted", "status", "before", "limit", "state", "stream", "key_id",
     "ciphertext", "token", "resume", "features", "alg"]
)
_endpoints = st.sampled_from(["chat", "notifications", "analytics"])
_fast = settings(
    max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_fast
@given(text=st.text(max_size=200) | st.binary(max_size=200), endpoint=_endpoints)
def test_parse_arbitrary_text_only_raises_protocol_errors(text: str | bytes, endpoint: Any) -> None:
    with contextlib.suppress(InvalidMessage, UnknownType):
        parse_client_frame(text, endpoint)
    parse_hello(text)  # never raises


@_fast
@given(
    type_=_types,
    fields=st.dictionaries(_keys, _json, max_size=5),
    endpoint=_endpoints,
)
def test_parse_arbitrary_objects_only_raises_protocol_errors(
    type_: str, fields: dict[str, Any], endpoint: Any
) -> None:
    text = json.dumps({**fields, "type": type_})
    try:
        parsed = parse_client_frame(text, endpoint)
    except (InvalidMessage, UnknownType) as e:
        assert isinstance(e.message, str)
    else:
        assert parsed.type == type_  # type: ignore[attr-defined]
    parse_hello(text)


# ------------------------------------------------------------------ server frames


def test_dump_drops_unset_fields() -> None:
    assert Pong().dump() == {"type": "pong"}
    assert Pong(id=3).dump() == {"type": "pong", "id": 3}
    assert Error(code="rate_limited", message="slow down", id="f").dump() == {
        "type": "error", "code": "rate_limited", "message": "slow down", "id": "f"}
    assert json.loads(Pong(id="p").to_json()) == {"type": "pong", "id": "p"}


def test_welcome_carries_endpoint_fields() -> None:
    w = Welcome(user="alice", role="client", heartbeat_s=25, session_id="s1", offset=0)
    dumped = w.dump()
    assert dumped["type"] == "welcome"
    assert dumped["session_id"] == "s1" and dumped["offset"] == 0
    assert isinstance(parse_server_frame(dumped), Welcome)


def test_entity_frames_match_server_models() -> None:
    """What the chat entity publishes validates as the protocol's server frames."""
    from confide.auth import Principal

    session = ChatSession.load(SessionRecord("s1", "ep", 0.0))
    therapist = Principal("tom", "therapist", frozenset({"s1"}), 1e12)
    _, _, events = session.join("c1", therapist, None)
    frames = [e.frame for e in events]
    msg = ChatMessage(type="message", id="m1", body={"t": "hi"})
    frames.append(session.published(session.accept("c1", therapist, msg, 5.0)).frame)
    frames += [e.frame for e in session.set_status("c1", therapist, "away", 6.0)]
    frames += [e.frame for e in session.end("c1", therapist)]
    frames += [e.frame for e in session.leave("c1")]
    kinds = [parse_server_frame(f).type for f in frames]
    assert kinds == ["presence", "message", "status", "ended", "presence"]


def test_stored_message_frame_is_a_message_event() -> None:
    m = StoredMessage("s1", 3, "ep", "m1", "bob", 1.5, {"x": 1}, False)
    event = parse_server_frame(m.frame())
    assert event.type == "message"
    assert event.dump() == m.frame()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(constant: str) -> None:
    text = '{"type":"message","id":"a","body":{"v":' + constant + '}}'
    with pytest.raises(InvalidMessage):
        parse_client_frame(text, "chat")


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400])
def test_numbers_that_overflow_a_double_are_refused(number: str) -> None:
    for endpoint, text in [
        ("chat", '{"type":"message","id":"a","body":{"v":' + number + '}}'),
        ("chat", '{"type":"history","limit":' + number + '}'),
        ("chat", '{"type":"ping","id":' + number + '}'),
        ("analytics", '{"type":"subscribe","stream":"system","x":' + number + '}'),
        ("notifications", '{"type":"list","limit":50,"x":[' + number + ']}'),
    ]:
        with pytest.raises(InvalidMessage):
            parse_client_frame(text, endpoint)  # type: ignore[arg-type]
    assert parse_hello('{"type":"hello","token":"t","x":' + number + '}') is None


def test_server_frames_are_strict_json() -> None:
    frame = Metrics(stream="system", ts=1.0, data={"p99": float("nan"), "n": 1})
    assert json.loads(frame.to_json(), parse_constant=lambda c: pytest.fail(c)) == {
        "type": "metrics", "stream": "system", "ts": 1.0, "data": {"p99": None, "n": 1}}
