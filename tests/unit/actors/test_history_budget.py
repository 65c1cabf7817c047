"""History replies and replay pages are bounded in bytes, not only in messages."""

from __future__ import annotations

from collections.abc import Callable

from actors.host import Host
from confide.protocol import ChatMessage, HistoryRequest

from .support import send, who

ALICE = who("alice")


async def filled(make_host: Callable[..., Host]) -> Host:
    host = make_host(history_max_bytes=64 * 1024)
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    for i in range(10):  # ten messages of 20 KB: 200 KB in all
        body = {"t": str(i) * 20_000}
        await send(host, "s1", "gw1:a", ALICE,
                   ChatMessage(type="message", id=f"m{i}", body=body))
    return host


async def test_history_pages_under_the_byte_budget(make_host: Callable[..., Host]) -> None:
    host = await filled(make_host)
    first = await host.chat_history("s1", HistoryRequest(type="history", limit=500))
    assert [m.offset for m in first.messages] == [8, 9, 10]  # the newest that fit 64 KiB
    assert not first.complete
    seen = [m.offset for m in first.messages]
    before = first.messages[0].offset
    while True:  # the client pages on with `before` until complete
        page = await host.chat_history("s1", HistoryRequest(type="history", before=before))
        assert sum(len(m.to_json()) for m in page.messages) <= 64 * 1024
        seen = [m.offset for m in page.messages] + seen
        if page.complete:
            break
        before = page.messages[0].offset
    assert seen == list(range(1, 11))


async def test_one_message_over_the_budget_is_still_served(
    make_host: Callable[..., Host],
) -> None:
    host = make_host(history_max_bytes=1024)
    await host.chat_join("s1", "gw1:a", ALICE, None, False)
    await send(host, "s1", "gw1:a", ALICE,
               ChatMessage(type="message", id="big", body={"t": "b" * 5000}))
    page = await host.chat_history("s1", HistoryRequest(type="history"))
    assert [m.id for m in page.messages] == ["big"] and page.complete


async def test_replay_pages_under_the_byte_budget(make_host: Callable[..., Host]) -> None:
    host = await filled(make_host)
    page = await host.chat_replay("s1", 0, 10)
    assert [f["offset"] for f in page] == [1, 2, 3]
    page = await host.chat_replay("s1", 3, 10)
    assert [f["offset"] for f in page] == [4, 5, 6]
