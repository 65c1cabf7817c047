"""The inbox entity: open connections, live sends and the backlog on connect."""

from __future__ import annotations

from confide.inbox import Inbox, NotificationRequest, new_record
from confide.store.base import NotificationRecord


def record(title: str = "t", state: str = "queued") -> NotificationRecord:
    req = NotificationRequest(user="bob", kind="reminder", title=title, body="b")
    rec = new_record(req, "svc", None, 10.0)
    rec.state = state
    return rec


def test_a_live_send_needs_an_open_connection_and_a_queued_record() -> None:
    box = Inbox("bob")
    rec = record()
    assert box.send_live(rec, 11.0) is None and rec.state == "queued"  # nobody connected
    box.attach("gw1:a")
    frame = box.send_live(rec, 12.0)
    assert frame is not None and (frame["type"], frame["id"]) == ("notification", rec.id)
    assert (rec.state, rec.sent_at, rec.attempts) == ("sent", 12.0, 1)
    assert box.send_live(rec, 13.0) is None  # already sent (say, by a connecting tab)
    assert box.send_live(record(state="delivered"), 13.0) is None


def test_the_backlog_is_sent_again_oldest_first_counting_attempts() -> None:
    box = Inbox("bob")
    box.attach("gw1:a")
    recs = [record("first"), record("second", state="sent")]
    recs[1].attempts = 1
    frames = box.backlog(recs, 20.0)
    assert [f["title"] for f in frames] == ["first", "second"]
    assert [(r.state, r.attempts) for r in recs] == [("sent", 1), ("sent", 2)]


def test_connections_come_and_go_and_die_with_their_replica() -> None:
    box = Inbox("bob")
    for conn in ("gw1:a", "gw1:b", "gw2:a"):
        box.attach(conn)
    box.detach("gw1:b")
    box.drop_connections("gw1:")
    assert box.conns == {"gw2:a"} and box.online
    box.detach("gw2:a")
    assert not box.online
