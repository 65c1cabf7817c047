"""`Host` (actors/host.py) driven directly, without Ray: chat, restart, polls, inboxes,
reaping and analytics. Interleavings are forced with store gates (see `support.Gate`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import actors.host.base as host_module
import confide.chat as chat_module
from actors.host import Host
from actors.host.messages import Joined, JoinItem, LeaveItem, Polled
from confide.analytics import resolve
from confide.errors import CloseCode, CloseConnection, Forbidden, NotFound
from confide.events import Event
from confide.protocol import Resume

from .support import (
    WAIT,
    Clock,
    GateFactory,
    assert_blocked,
    frames,
    msg,
    note,
    send,
    settle,
    started,
    who,
)

ALICE = who("alice")
BOB = who("bob")
THERA = who("tina", "therapist")
ADMIN = who("root", "admin", ())
SERVICE = who("svc", "service", ())
EVERYTHING = 10**9


def stored_offsets(host: Host, session_id: str = "s1") -> list[int]:
    return [m.offset for m in host.store.messages_after(session_id, 0, EVERYTHING, 1000)]


def events_since(host: Host, seq: int, topic: str | None = None) -> list[Event]:
    events, lost = host.log.since(seq)
    assert not lost
    return [e for e in events if topic is None or e.topic == topic]


# ------------------------------------------------------------------------------- chat


async def test_join_welcome_fields(host: Host) -> None:
    joined = await host.chat_join("s1", "gw1:a", ALICE, None, False)
    welcome = joined.welcome
    assert welcome["session_id"] == "s1"
    assert isinstance(welcome["epoch"], str) and welcome["epoch"]
    assert welcome["offset"] == 0
    assert welcome["members"] == [{"user": "alice", "role": "client", "status": "online"}]
    assert welcome["recovered"] is True
    assert (joined.replay_after, joined.upto, joined.large_frames) == (None, 0, False)
    [presence] = frames(events_since(host, 0), "presence")
    assert (presence["event"], presence["user"]) == ("join", "alice")


async def test_quiet_join_publishes_no_presence(host: Host) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, True)
    assert host.log.head == 0


async def test_join_of_a_session_not_in_the_token_is_refused(host: Host) -> None:
    with pytest.raises(CloseConnection) as exc:
        await host.chat_join("s2", "gw1:a", ALICE, None, False)
    assert exc.value.close_code == CloseCode.FORBIDDEN


async def test_messages_get_consecutive_offsets(host: Host) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    acks = [await send(host, "s1", "gw1:a", ALICE, msg(f"m{i}")) for i in range(3)]
    assert acks == [{"type": "ack", "id": f"m{i}", "offset": i + 1} for i in range(3)]
    published = frames(events_since(host, 0, "chat:s1"), "message")
    assert [(f["offset"], f["id"], f["sender"]) for f in published] == [
        (1, "m0", "alice"), (2, "m1", "alice"), (3, "m2", "alice")]
    assert stored_offsets(host) == [1, 2, 3]


async def test_ack_only_once_the_store_has_the_message(host: Host, gate: GateFactory) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    write = gate(host.store, "append_messages")
    sending = asyncio.ensure_future(send(host, "s1", "gw1:a", ALICE, msg("m1")))
    await write.wait_entered()
    await settle()
    assert not sending.done()
    assert stored_offsets(host) == []
    assert frames(events_since(host, 0), "message") == []  # not published before durable
    write.open()
    ack = await asyncio.wait_for(sending, WAIT)
    assert ack["offset"] == 1
    assert stored_offsets(host) == [1]


async def test_resend_gets_the_same_ack_and_publishes_nothing(host: Host) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    first = await send(host, "s1", "gw1:a", ALICE, msg("m1"))
    head = host.log.head
    again = await send(host, "s1", "gw1:a", ALICE, msg("m1", "other body"))
    assert again == first
    assert host.log.since(head) == ([], False)
    assert stored_offsets(host) == [1]


async def test_same_id_from_another_sender_is_another_message(host: Host) -> None:
    await send(host, "s1", "gw1:a", ALICE, msg("m1"))
    ack = await send(host, "s1", "gw1:b", BOB, msg("m1"))
    assert ack["offset"] == 2


async def test_concurrent_twins_make_one_message(host: Host, gate: GateFactory) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    write = gate(host.store, "append_messages")
    first = asyncio.ensure_future(send(host, "s1", "gw1:a", ALICE, msg("m1")))
    await write.wait_entered()
    # Twins (a retry, another tab) while the original is committing: no ack before durable.
    twins = [await started(send(host, "s1", c, ALICE, msg("m1"))) for c in ("gw1:a",
                                                                                   "gw1:b")]
    assert not any(t.done() for t in twins)
    write.open()
    acks = await asyncio.wait_for(asyncio.gather(first, *twins), WAIT)
    assert [a["offset"] for a in acks] == [1, 1, 1]
    assert stored_offsets(host) == [1]
    assert len(frames(events_since(host, 0), "message")) == 1


async def test_twins_racing_from_the_start_make_one_message(host: Host) -> None:
    acks = await asyncio.wait_for(asyncio.gather(
        *(send(host, "s1", f"gw1:{k}", ALICE, msg("m1")) for k in range(5))), WAIT)
    assert {a["offset"] for a in acks} == {1}
    assert stored_offsets(host) == [1]


async def test_join_during_a_commit_sees_the_previous_offset(host: Host, gate: GateFactory) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    await send(host, "s1", "gw1:a", ALICE, msg("m1"))
    write = gate(host.store, "append_messages")
    sending = asyncio.ensure_future(send(host, "s1", "gw1:a", ALICE, msg("m2")))
    await write.wait_entered()
    head = host.log.head
    joined = await host.chat_join("s1", "gw1:b", BOB, None, False)
    assert (joined.welcome["offset"], joined.upto) == (1, 1)
    epoch = joined.welcome["epoch"]
    resumed = await host.chat_join("s1", "gw1:c", BOB, Resume(offset=0, epoch=epoch), True)
    assert (resumed.welcome["recovered"], resumed.replay_after, resumed.upto) == (
        True, 0, 1)
    write.open()
    assert (await asyncio.wait_for(sending, WAIT))["offset"] == 2
    after = [(f["type"], f.get("user"), f.get("offset")) for f in frames(
        events_since(host, head))]
    assert after == [("presence", "bob", None), ("message", None, 2)]  # m2 comes live, after
    later = await host.chat_join("s1", "gw1:d", who("carol"), None, False)
    assert (later.welcome["offset"], later.upto) == (2, 2)


async def test_resume_from_an_unknown_epoch_is_not_recovered(host: Host) -> None:
    await send(host, "s1", "gw1:a", ALICE, msg("m1"))
    joined = await host.chat_join("s1", "gw1:b", BOB, Resume(offset=1, epoch="nope"), False)
    assert joined.welcome["recovered"] is False
    assert joined.replay_after is None


async def test_end_waits_for_messages_in_flight(host: Host, gate: GateFactory) -> None:
    await host.chat_join("s1", "gw1:t", THERA, None, False)
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    head = host.log.head
    write = gate(host.store, "append_messages")
    sending = asyncio.ensure_future(send(host, "s1", "gw1:a", ALICE, msg("m1")))
    await write.wait_entered()
    ending = await started(host.chat_end("s1", "gw1:t", THERA))
    # From the end on, nothing new is accepted, even while `ended` waits.
    with pytest.raises(CloseConnection) as late:
        await send(host, "s1", "gw1:a", ALICE, msg("m2"))
    assert late.value.close_code == CloseCode.SESSION_ENDED
    await assert_blocked(ending)
    assert frames(events_since(host, head), "ended") == []
    write.open()
    await asyncio.wait_for(asyncio.gather(sending, ending), WAIT)
    tail = events_since(host, head)
    assert [e.frame["type"] for e in tail] == ["message", "ended"]
    assert tail[-1].frame == {"type": "ended", "by": "tina"}
    assert tail[-1].close_code == CloseCode.SESSION_ENDED
    assert stored_offsets(host) == [1]


async def test_message_after_end_is_closed_with_4410(host: Host) -> None:
    await host.chat_join("s1", "gw1:t", THERA, None, False)
    await send(host, "s1", "gw1:a", ALICE, msg("m1"))
    await host.chat_end("s1", "gw1:t", THERA)
    with pytest.raises(CloseConnection) as exc:
        await send(host, "s1", "gw1:a", ALICE, msg("m2"))
    assert exc.value.close_code == CloseCode.SESSION_ENDED
    # a retry of a message accepted before the end still gets its ack
    assert (await send(host, "s1", "gw1:a", ALICE, msg("m1")))["offset"] == 1
    with pytest.raises(CloseConnection) as join:
        await host.chat_join("s1", "gw1:b", BOB, None, False)
    assert join.value.close_code == CloseCode.SESSION_ENDED


async def test_end_by_a_client_is_forbidden(host: Host) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    with pytest.raises(Forbidden):
        await host.chat_end("s1", "gw1:a", ALICE)
    assert (await send(host, "s1", "gw1:a", ALICE, msg("m1")))["offset"] == 1
    assert frames(events_since(host, 0), "ended") == []


# ---------------------------------------------------------------------------- restart


async def test_restart_reloads_the_session(make_host: Callable[..., Host]) -> None:
    first = make_host()
    epoch = (await first.chat_join("s1", "gw1:a", ALICE, None, False)).welcome["epoch"]
    for i in (1, 2):
        await send(first, "s1", "gw1:a", ALICE, msg(f"m{i}"))
    again = make_host()  # a new incarnation on the same data dir
    assert again.incarnation != first.incarnation
    welcome = (await again.chat_join("s1", "gw1:b", BOB, None, False)).welcome
    assert (welcome["epoch"], welcome["offset"]) == (epoch, 2)
    assert (await send(again, "s1", "gw1:a", ALICE, msg("m3")))["offset"] == 3
    head = again.log.head
    assert (await send(again, "s1", "gw1:a", ALICE, msg("m1")))["offset"] == 1
    assert again.log.since(head) == ([], False)
    assert stored_offsets(again) == [1, 2, 3]


async def test_restart_finds_old_ids_beyond_the_cache_in_the_store(
    make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_host()
    for i in (1, 2, 3):
        await send(first, "s1", "gw1:a", ALICE, msg(f"m{i}"))
    monkeypatch.setattr(host_module, "IDEMPOTENCY_CACHE", 2)
    monkeypatch.setattr(chat_module, "IDEMPOTENCY_CACHE", 2)
    again = make_host()
    head = again.log.head
    twins = [send(again, "s1", f"gw1:{k}", ALICE, msg("m1")) for k in "ab"]
    acks = await asyncio.wait_for(asyncio.gather(*twins), WAIT)
    assert [a["offset"] for a in acks] == [1, 1]
    assert (await send(again, "s1", "gw1:a", ALICE, msg("m4")))["offset"] == 4
    assert [f["offset"] for f in frames(events_since(again, head), "message")] == [4]


async def test_an_ended_session_stays_ended_after_restart(
    make_host: Callable[..., Host]
) -> None:
    first = make_host()
    await first.chat_join("s1", "gw1:t", THERA, None, False)
    await first.chat_end("s1", "gw1:t", THERA)
    again = make_host()
    with pytest.raises(CloseConnection) as exc:
        await again.chat_join("s1", "gw1:a", ALICE, None, False)
    assert exc.value.close_code == CloseCode.SESSION_ENDED


# ------------------------------------------------------------------------------- poll


async def test_poll_of_another_incarnation_is_answered_at_once(host: Host) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    await send(host, "s1", "gw1:a", ALICE, msg("m1"))
    for incarnation in (None, "an-older-one"):
        res = await asyncio.wait_for(host.poll("gw1", incarnation, 0, 30.0), WAIT)
        assert res == Polled(host.incarnation, [], host.log.head, False)
        assert res.cursor == 2


async def test_waiting_polls_wake_when_an_event_is_published(host: Host) -> None:
    inc = host.incarnation
    polls = [await started(host.poll(r, inc, 0, 30.0)) for r in ("gw1", "gw2")]
    assert not any(p.done() for p in polls)
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    for res in await asyncio.wait_for(asyncio.gather(*polls), WAIT):
        assert [e.frame["type"] for e in res.events] == ["presence"]
        assert (res.cursor, res.lost) == (1, False)
    res = await asyncio.wait_for(host.poll("gw1", inc, 1, 0.01), WAIT)  # nothing new
    assert (res.events, res.cursor, res.lost) == ([], 1, False)


async def test_poll_reports_lost_when_the_log_overran(make_host: Callable[..., Host]) -> None:
    host = make_host(event_buffer=2)
    for i in range(6):
        host.publish(Event("chat:s1", {"type": "status", "n": i}))
    res = await asyncio.wait_for(host.poll("gw1", host.incarnation, 0, 30.0), WAIT)
    assert res.lost is True
    assert res.cursor == host.log.head == 6
    assert [e.seq for e in res.events][-1] == 6
    res = await asyncio.wait_for(host.poll("gw1", host.incarnation, 5, 30.0), WAIT)
    assert (res.lost, [e.seq for e in res.events]) == (False, [6])


# ------------------------------------------------------------------------------ inbox


async def test_a_client_may_not_post_notifications(host: Host) -> None:
    with pytest.raises(Forbidden):
        await host.inbox_post(ALICE, note("bob"), None)
    assert (await host.inbox_list("bob", "all", 50, None)).dump()["items"] == []


async def test_post_idempotency_key_returns_the_first_answer(host: Host) -> None:
    first = await host.inbox_post(SERVICE, note("bob"), "k1")
    again = await host.inbox_post(SERVICE, note("bob", "changed"), "k1")
    assert again == first == {"id": first["id"], "state": "queued"}
    other = await host.inbox_post(THERA, note("bob"), "k1")  # keys are per producer
    assert other["id"] != first["id"]
    assert len((await host.inbox_list("bob", "all", 50, None)).dump()["items"]) == 2


async def test_attach_sends_undelivered_oldest_first_with_counts(host: Host) -> None:
    ids = [(await host.inbox_post(SERVICE, note("bob", f"t{i}"), None))["id"] for i in range(3)]
    attached = await host.inbox_attach("bob", "gw1:a")
    assert [i["id"] for i in attached.items] == ids
    assert (attached.pending, attached.unread) == (3, 3)
    for nid in ids:
        status = await host.notification_status(nid, BOB)
        assert (status["state"], status["attempts"]) == ("sent", 1)
        assert status["sent_at"] is not None
    await host.inbox_ack("bob", ids[0], "delivered")
    again = await host.inbox_attach("bob", "gw1:b")  # another tab: the rest again
    assert [i["id"] for i in again.items] == ids[1:]
    assert (again.pending, again.unread) == (2, 3)
    assert (await host.notification_status(ids[1], BOB))["attempts"] == 2
    assert (await host.notification_status(ids[0], BOB))["attempts"] == 1


async def test_post_to_a_connected_user_is_sent_live(host: Host) -> None:
    await host.inbox_attach("bob", "gw1:a")
    nid = (await host.inbox_post(SERVICE, note("bob"), None))["id"]
    [live] = events_since(host, 0, "inbox:bob")
    assert (live.frame["type"], live.frame["id"]) == ("notification", nid)
    status = await host.notification_status(nid, BOB)
    assert (status["state"], status["attempts"]) == ("sent", 1)


@pytest.mark.parametrize("held", ["attach", "ack"])
async def test_read_ack_racing_another_tab_never_moves_backwards(
    host: Host, gate: GateFactory, held: str
) -> None:
    nid = (await host.inbox_post(SERVICE, note("bob"), None))["id"]
    write = gate(host.store, "update_notifications")  # the first state write waits
    attach = lambda: host.inbox_attach("bob", "gw1:b")  # noqa: E731
    ack = lambda: host.inbox_ack("bob", nid, "read")  # noqa: E731
    first, second = (attach, ack) if held == "attach" else (ack, attach)
    holding = asyncio.ensure_future(first())
    await write.wait_entered()
    waiting = await started(second())
    await assert_blocked(waiting)  # queued behind the user's inbox lock
    write.open()
    results = await asyncio.wait_for(asyncio.gather(holding, waiting), WAIT)
    status = await host.notification_status(nid, BOB)
    assert status["state"] == "read"
    assert status["read_at"] is not None and status["delivered_at"] is not None
    attached = results[0] if held == "attach" else results[1]
    assert [i["id"] for i in attached.items] == ([nid] if held == "attach" else [])
    assert (await host.inbox_attach("bob", "gw1:c")).items == []


async def test_read_ack_before_a_slow_post_finishes_is_not_undone(
    host: Host, gate: GateFactory
) -> None:
    await host.inbox_attach("bob", "gw1:a")  # bob is connected: posts are sent live
    insert = gate(host.store, "insert_notification", after=True)  # durable, not yet answered
    posting = asyncio.ensure_future(host.inbox_post(SERVICE, note("bob"), None))
    await insert.wait_entered()
    [item] = (await host.inbox_attach("bob", "gw1:b")).items  # another tab gets it
    await host.inbox_ack("bob", item["id"], "read")
    insert.open()
    await asyncio.wait_for(posting, WAIT)
    status = await host.notification_status(item["id"], BOB)
    assert status["state"] == "read"
    assert status["read_at"] is not None


async def test_ack_of_another_users_notification_is_not_found(host: Host) -> None:
    nid = (await host.inbox_post(SERVICE, note("bob"), None))["id"]
    with pytest.raises(NotFound):
        await host.inbox_ack("carol", nid, "read")
    with pytest.raises(NotFound):
        await host.inbox_ack("bob", "no-such-id", "read")
    assert (await host.notification_status(nid, BOB))["state"] == "queued"


async def test_notification_status_is_for_producer_and_recipient(host: Host) -> None:
    nid = (await host.inbox_post(SERVICE, note("bob"), None))["id"]
    for viewer in (SERVICE, BOB):
        status = await host.notification_status(nid, viewer)
        assert (status["id"], status["user"], status["state"]) == (nid, "bob", "queued")
    for stranger in (who("carol"), ADMIN):
        with pytest.raises(NotFound):
            await host.notification_status(nid, stranger)


# ------------------------------------------------------------------------------- reap


async def test_reap_drops_the_connections_of_a_reader_that_stopped_polling(
    host: Host, clock: Clock
) -> None:
    session_ref = resolve("session:s1", ADMIN)
    system_ref = resolve("system", ADMIN)
    for gw, user in (("gw1", ALICE), ("gw2", BOB)):
        await host.chat_join("s1", f"{gw}:chat", user, None, False)
        await host.inbox_attach(user.user, f"{gw}:inbox")
        await host.stream_subscribe(system_ref, f"{gw}:stream", ADMIN)
    await host.stream_subscribe(session_ref, "gw1:session", ADMIN)
    inc = host.incarnation
    for gw in ("gw1", "gw2"):
        await host.poll(gw, inc, host.log.head, 0.0)
    clock.advance(60)
    await host.poll("gw2", inc, host.log.head, 0.0)  # gw2 keeps polling, gw1 went silent
    head = host.log.head
    host.reap(clock.monotonic() + 40)  # gw1: 100 s silent; gw2: 40 s
    [leave] = events_since(host, head)
    assert leave.topic == "chat:s1"
    assert (leave.frame["type"], leave.frame["event"], leave.frame["user"]) == (
        "presence", "leave", "alice")
    assert leave.frame["members"] == [{"user": "bob", "role": "client", "status": "online"}]
    # inbox registrations: alice's is gone (posts stay queued), bob's is kept (sent live)
    head = host.log.head
    to_alice = (await host.inbox_post(SERVICE, note("alice"), None))["id"]
    to_bob = (await host.inbox_post(SERVICE, note("bob"), None))["id"]
    assert [e.topic for e in events_since(host, head)] == ["inbox:bob"]
    assert (await host.notification_status(to_alice, ALICE))["state"] == "queued"
    assert (await host.notification_status(to_bob, BOB))["state"] == "sent"
    # stream registrations: gw1's session stream is no longer served, gw2's system one is
    head = host.log.head
    await send(host, "s1", "gw2:chat", BOB, msg("m1"))  # the session's figures change
    clock.advance(2)
    await host.tick()
    ticked = {e.topic for e in events_since(host, head)} - {"chat:s1"}
    assert ticked == {"stream:system"}
    host.reap(clock.monotonic() + 40)  # nothing left to drop twice
    assert {e.topic for e in events_since(host, head)} - {"chat:s1"} == {"stream:system"}


# -------------------------------------------------------------------------- analytics


async def test_session_stream_of_an_unknown_session_is_not_found(host: Host) -> None:
    with pytest.raises(NotFound):
        await host.stream_subscribe(resolve("session:nope", ADMIN), "gw1:a", ADMIN)
    assert host.store.load_session("nope") is None  # not created by asking


async def test_system_snapshot_has_the_reported_figures(host: Host) -> None:
    await host.stream_report("gw-a", "gateway", {
        "connections": {"chat": 2, "notifications": 1}, "errors_by_code": {"forbidden": 3},
        "rss_mb": 10.0})
    await host.stream_report("host-7", "host", {"sessions": 4, "rss_mb": 20.0})
    snap = await host.stream_subscribe(resolve("system", ADMIN), "gw1:a", ADMIN)
    assert snap is not None
    assert (snap["type"], snap["stream"]) == ("metrics", "system")
    data = snap["data"]
    assert data["connections"] == {"chat": 2, "notifications": 1}
    assert data["connections_total"] == 3
    assert (data["gateways"], data["hosts"], data["sessions"]) == (1, 1, 4)
    assert data["errors_by_code"] == {"forbidden": 3}
    assert data["memory_mb"] == {"gateways": 10.0, "hosts": 20.0}


async def test_first_tick_after_subscribe_does_not_repeat_the_snapshot(
    host: Host, clock: Clock
) -> None:
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    ref = resolve("session:s1", ADMIN)
    snap = await host.stream_subscribe(ref, "gw1:s", ADMIN)
    assert snap is not None and snap["data"]["online"] == 1
    head = host.log.head
    clock.advance(2)
    await host.tick()
    assert events_since(host, head, ref.topic) == []  # same figures: the snapshot counts
    await host.chat_join("s1", "gw1:b", BOB, None, True)
    clock.advance(2)
    await host.tick()
    [update] = events_since(host, head, ref.topic)
    assert (update.frame["type"], update.frame["data"]["online"]) == ("metrics", 2)


async def test_joins_and_leaves_of_many_connections_in_one_call(host: Host) -> None:
    outsider = who("mallory", sessions=("s9",))
    answers = await host.chat_joins([
        JoinItem("s1", "gw1:a", ALICE, None, False),
        JoinItem("s1", "gw1:m", outsider, None, False),
        JoinItem("s2", "gw1:b", who("bob", sessions=("s2",)), None, False),
    ])
    assert isinstance(answers[0], Joined) and answers[0].welcome["session_id"] == "s1"
    assert isinstance(answers[1], CloseConnection)
    assert answers[1].close_code == CloseCode.FORBIDDEN
    assert isinstance(answers[2], Joined) and answers[2].welcome["session_id"] == "s2"
    assert await host.chat_leaves([LeaveItem("s1", "gw1:a"), LeaveItem("s2", "gw1:b")]) == [
        None, None]
    leaves = [f for f in frames(host.log.since(0)[0], "presence") if f["event"] == "leave"]
    assert sorted(f["user"] for f in leaves) == ["alice", "bob"]
