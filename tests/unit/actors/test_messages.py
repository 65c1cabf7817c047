"""What crosses the Ray boundary between a gateway replica and a host: pickle round trips."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from actors.blobs import Blob
from actors.host.messages import (
    Attached,
    ChatItem,
    Joined,
    JoinItem,
    LeaveItem,
    Polled,
    SubmitItem,
)
from confide.analytics import StreamRef
from confide.errors import CloseCode, CloseConnection
from confide.events import Event
from confide.protocol import Ack, Error, History, MessageEvent, Notification, Notifications, Resume

from .support import msg, who


def roundtrip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


MESSAGE = MessageEvent(session_id="s1", offset=3, epoch="e1", id="m3", sender="alice",
                       ts=1.5, body={"text": "hi", "n": [1, 2.5]}, encrypted=False)


@pytest.mark.parametrize("value", [
    ChatItem("s1", "gw1:a", who("alice"), msg("m1", "hello")),
    JoinItem("s1", "gw1:a", who("alice"), Resume(offset=4, epoch="e1"), False),
    JoinItem("s1", "gw1:b", who("bob"), None, True),
    LeaveItem("s1", "gw1:a"),
    SubmitItem(StreamRef("fhe:mood", "fhe", "stream:fhe:mood", "k1"), Blob("ref", 790_000),
               "alice", "c-1"),
    SubmitItem(StreamRef("fhe:mood", "fhe", "stream:fhe:mood", "k1"), Blob("ref", 1), None, None),
    Joined({"session_id": "s1", "epoch": "e1", "offset": 4, "recovered": True,
            "members": [{"user": "alice", "role": "client", "status": "online"}]}, 2, 4, True),
    Joined({"epoch": "e1"}, None, 0, False),
    Attached(2, 5, [Notification(id="n1", kind="k", title="t", body="b",
                                 created_at=1.0).dump()]),
    Polled("inc", [Event("chat:s1", MESSAGE.dump(), seq=7, size=40),
                   Event("chat:s1", {}, control="large_frames", seq=8),
                   Event("chat:s1", {"type": "ended", "by": "t"}, close_code=4410,
                         only_roles=frozenset({"therapist"}), exclude_user="x", seq=9)],
           9, True),
    Ack(id="m1", offset=1),
    Error(code="invalid_message", message="bad", id="m2"),
    History(messages=[MESSAGE], complete=False),
    Notifications(items=[Notification(id="n1", kind="k", title="t", body="b", data={"a": 1},
                                      created_at=2.0, state="read")]),
])
def test_round_trip_keeps_every_field(value: Any) -> None:
    assert roundtrip(value) == value


def test_a_closing_answer_keeps_its_code_and_reason() -> None:
    back = roundtrip(CloseConnection(CloseCode.SESSION_ENDED, "session ended"))
    assert (back.close_code, back.reason) == (CloseCode.SESSION_ENDED, "session ended")
