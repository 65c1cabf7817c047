"""A host whose disk fills up: messages fail with `internal`, later ones succeed once
space returns, and nothing acknowledged is lost (real SQLite, a deterministic full disk)."""

from __future__ import annotations

from actors.host import Host
from actors.host.messages import ChatItem
from confide.errors import Internal
from confide.protocol import Ack, Error
from confide.store.sqlite import SqliteStore
from tests.unit.diskfull import fill, free

from .support import msg, send, who

ALICE = who("alice")
BIG = "y" * 4000


def stored(host: Host) -> list[tuple[int, str]]:
    return [(m.offset, m.id) for m in host.store.messages_after("s1", 0, 10**9, 10**6)]


async def test_full_disk_answers_internal_and_writes_resume_by_themselves(host: Host) -> None:
    assert isinstance(host.store, SqliteStore)
    await host.chat_join("s1", "gw:a", ALICE, None, False)
    acked = [await send(host, "s1", "gw:a", ALICE, msg(f"a{i}", BIG)) for i in range(3)]
    assert [a["offset"] for a in acked] == [1, 2, 3]

    fill(host.store)
    items = [ChatItem("s1", "gw:a", ALICE, msg(f"f{i}", BIG)) for i in range(20)]
    answers = await host.chat_batch(items)
    assert answers and all(isinstance(a, Error) and a.code == "internal" for a in answers)
    assert all(a.id == f"f{i}" for i, a in enumerate(answers) if isinstance(a, Error))
    try:
        await send(host, "s1", "gw:a", ALICE, msg("f-again", BIG))
        raise AssertionError("a write on a full disk must fail")
    except Internal:
        pass

    free(host.store)
    later = [await send(host, "s1", "gw:a", ALICE, msg(f"b{i}", BIG)) for i in range(3)]
    # Offsets stay consecutive: the failed ones took none.
    assert [a["offset"] for a in later] == [4, 5, 6]
    # A retry of a message that failed is a new message now, and it is stored.
    [retry] = await host.chat_batch([ChatItem("s1", "gw:a", ALICE, msg("f0", BIG))])
    assert isinstance(retry, Ack) and retry.offset == 7
    assert stored(host) == [(1, "a0"), (2, "a1"), (3, "a2"), (4, "b0"), (5, "b1"),
                            (6, "b2"), (7, "f0")]


async def test_full_disk_fails_a_notification_then_it_is_accepted(host: Host) -> None:
    from .support import note

    fill(host.store)
    producer = who("svc", "service", ())
    try:
        await host.inbox_post(producer, note("bob"), "k1")
        raise AssertionError("a write on a full disk must fail")
    except Exception as exc:  # noqa: BLE001 - the store's own error, mapped by the gateway
        assert "full" in str(exc)
    free(host.store)
    result = await host.inbox_post(producer, note("bob"), "k1")
    assert result["state"] == "queued"
    assert host.store.get_notification(result["id"]) is not None
