"""The host's audit trail: every listed action leaves exactly one record, written in
batches (not one store round trip per event), kept through a failing store, pruned by age."""

from __future__ import annotations

from collections.abc import Callable

from actors.host import Host
from confide.audit import AuditRecord, record
from confide.protocol import AuditQuery
from tests.unit.diskfull import fill, free

from .support import msg, note, send, until, who

ALICE = who("alice")
BOB = who("bob")
THERA = who("tina", "therapist")
SERVICE = who("svc", "service", ())


def trail(host: Host, **query: object) -> list[tuple[str, str, str, str]]:
    """Stored events (actor, action, target, outcome), oldest first."""
    found = host.store.query_audit(query.get("user"), query.get("target"),  # type: ignore[arg-type]
                                   None, 1000)
    return [(r.actor, r.action, r.target, r.outcome) for r in reversed(found)]


async def test_join_leave_end_are_recorded_once_each(host: Host) -> None:
    await host.chat_join("s1", "gw:a", ALICE, None, False)
    await host.chat_join("s1", "gw:t", THERA, None, False)
    await host.chat_join("s1", "gw:a", ALICE, None, True)  # a quiet re-attach: not a join
    await send(host, "s1", "gw:a", ALICE, msg("m1"))  # messages are not recorded
    await host.chat_leave("s1", "gw:a")
    await host.chat_leave("s1", "gw:a")  # already gone: nothing more
    await host.chat_leave("s1", "gw:nobody")
    await host.chat_end("s1", "gw:t", THERA)
    assert trail(host) == []  # nothing written yet: events wait for the batch
    await host.flush_audit()
    assert trail(host) == [
        ("alice", "session.join", "s1", "ok"),
        ("tina", "session.join", "s1", "ok"),
        ("alice", "session.leave", "s1", "ok"),
        ("tina", "session.end", "s1", "ok"),
    ]


async def test_one_flush_is_one_batch_whatever_the_number_of_events(host: Host) -> None:
    writes: list[int] = []
    real = host.store.append_audit

    def counted(records: list[AuditRecord]) -> None:
        writes.append(len(records))
        real(records)

    host.store.append_audit = counted  # type: ignore[method-assign]
    for i in range(50):
        await host.chat_join("s1", f"gw:{i}", ALICE, None, False)
    await host.flush_audit()
    assert writes == [50]


async def test_a_full_batch_is_written_without_waiting_for_the_timer(host: Host) -> None:
    host.audit_buffer.batch = 10
    for i in range(10):
        await host.chat_join("s1", f"gw:{i}", ALICE, None, False)
    await until(lambda: len(trail(host)) == 10)


async def test_reading_a_notification_is_recorded_once(host: Host) -> None:
    posted = await host.inbox_post(SERVICE, note("bob"), "k1")
    nid = posted["id"]
    await host.inbox_attach("bob", "gw:b")
    await host.inbox_ack("bob", nid, "delivered")
    await host.inbox_ack("bob", nid, "read")
    await host.inbox_ack("bob", nid, "read")  # again: no change, no second record
    await host.flush_audit()
    assert trail(host) == [("bob", "notification.read", nid, "ok")]


async def test_a_hidden_notification_status_is_recorded_as_refused(host: Host) -> None:
    nid = (await host.inbox_post(SERVICE, note("bob"), "k1"))["id"]
    await host.notification_status(nid, SERVICE)  # the producer may look: not recorded
    try:
        await host.notification_status(nid, ALICE)
        raise AssertionError("alice must not see bob's notification")
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "NotFound"
    await host.flush_audit()
    assert trail(host) == [("alice", "notification.status", nid, "denied")]


async def test_dropped_connections_of_a_dead_replica_are_recorded_as_leaves(host: Host) -> None:
    await host.poll("gw", host.incarnation, 0, 0)
    await host.chat_join("s1", "gw:a", ALICE, None, False)
    await host.chat_join("s1", "gw:b", BOB, None, False)
    host.reap(host.clock.monotonic() + 10 * host.settings.poll_timeout_s)
    await host.flush_audit()
    assert sorted(e for e in trail(host) if e[1] == "session.leave") == [
        ("alice", "session.leave", "s1", "ok"), ("bob", "session.leave", "s1", "ok")]


async def test_gateway_events_and_the_query(host: Host) -> None:
    now = host.clock.time()
    await host.audit_record([record(now, "-", "connect", "/ws/chat/s1", "unauthenticated"),
                             record(now + 1, "bob", "session.join", "s9", "denied")])
    # The query writes this host's waiting events first: nothing is missing from it.
    answer = await host.audit_query(AuditQuery(user="bob"))
    assert [(e.actor, e.action, e.target, e.outcome) for e in answer.events] == [
        ("bob", "session.join", "s9", "denied")]
    everything = await host.audit_query(AuditQuery())
    assert [e.ts for e in everything.events] == [now + 1, now]  # newest first
    assert (await host.audit_query(AuditQuery(session="s9"))).events[0].actor == "bob"
    assert (await host.audit_query(AuditQuery(since=now + 0.5))).events[0].ts == now + 1
    assert len((await host.audit_query(AuditQuery(limit=1))).events) == 1


async def test_events_wait_through_a_full_disk_and_are_written_after(host: Host) -> None:
    await host.chat_join("s1", "gw:a", ALICE, None, False)
    await host.flush_audit()  # the table's first pages exist
    for i in range(300):
        await host.chat_join("s1", f"gw:{i}", BOB, None, False)
    fill(host.store)  # type: ignore[arg-type]
    await host.flush_audit()  # fails: kept
    assert len(host.audit_buffer) == 300
    free(host.store)  # type: ignore[arg-type]
    await host.flush_audit()
    assert len(trail(host, user="bob")) == 300 and len(host.audit_buffer) == 0


async def test_retention_prunes_old_events_in_the_sweep(
    make_host: Callable[..., Host],
) -> None:
    host = make_host(audit_retention_days=1)
    now = host.clock.time()
    host.store.append_audit([record(now - 3 * 86400, "old", "session.join", "s1"),
                             record(now - 3600, "recent", "session.join", "s1")])
    host.sweep()
    await until(lambda: [a for a, *_ in trail(host)] == ["recent"])
    # Kept for good with a retention of 0.
    keeper = make_host(audit_retention_days=0)
    keeper.store.append_audit([record(now - 10_000 * 86400, "ancient", "x", "y")])
    assert await keeper.prune_audit() == 0
    assert "ancient" in [a for a, *_ in trail(keeper)]


async def test_close_writes_what_waits(make_host: Callable[..., Host]) -> None:
    host = make_host()
    await host.chat_join("s1", "gw:a", ALICE, None, False)
    await host.close()
    again = make_host()
    assert trail(again) == [("alice", "session.join", "s1", "ok")]
