"""ChatClient against the scripted chat server: handshake, acks, dedupe, resume, outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection

from confide.client import ChatClient, ClientClosed, ConnectError, ServerError
from confide.client import chat as chat_module
from confide.client.chat import session_from_url
from confide.client.events import Event
from tests.unit.client.conftest import FAST, ChatServer, recv, running, send, welcome


@pytest.fixture
async def server() -> AsyncIterator[tuple[ChatServer, str]]:
    chat = ChatServer()
    async with running(chat.handler) as base:
        yield chat, f"{base}/ws/chat/s1"


async def messages_until(client: ChatClient, offset: int) -> list[int]:
    """Offsets of the message events, in order, up to and including `offset`."""
    seen: list[int] = []
    while not seen or seen[-1] < offset:
        event = await client.next_event("message", timeout=3)
        seen.append(event["offset"])
    return seen


async def test_handshake_sends_hello_and_returns_welcome(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    client = ChatClient(url, "tok-alice", **FAST)
    try:
        frame = await client.connect(timeout=3)
        assert frame["type"] == "welcome" and client.welcome == frame
        assert client.state == "open" and client.user == "alice"
        assert client.session_id == "s1" and client.epoch == "e1" and client.last_offset == 0
        hello = chat.hellos[0]
        assert hello["token"] == "tok-alice" and hello["client"] == "confide-py/0.1"
        assert "resume" not in hello and hello["_subprotocol"] == "confide.v1"
        assert "authorization" not in hello["_headers"]
    finally:
        await client.disconnect()


async def test_token_in_header(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    async with ChatClient(url, "tok", token_in_header=True, extra_headers={"X-Trace": "1"}):
        hello = chat.hellos[0]
    assert "token" not in hello
    assert hello["_headers"]["authorization"] == "Bearer tok"
    assert hello["_headers"]["x-trace"] == "1"


async def test_message_is_acked_and_broadcast(server: tuple[ChatServer, str]) -> None:
    _, url = server
    async with ChatClient(url, "tok", **FAST) as client:
        message_id = await client.send_message({"text": "hi"})
        assert await client.wait_acked(message_id, timeout=3) == 1
        event = await client.next_event("message", timeout=3)
        assert event["body"] == {"text": "hi"} and event["id"] == message_id
        assert client.last_offset == 1 and client.pending == []
        assert await client.wait_acked(message_id) == 1  # remembered after the ack


async def test_messages_are_deduplicated_by_offset() -> None:
    def message(offset: int) -> Event:
        return {
            "type": "message",
            "session_id": "s1",
            "offset": offset,
            "epoch": "e1",
            "id": f"m{offset}",
            "sender": "bob",
            "ts": 0.0,
            "body": {},
            "encrypted": False,
        }

    async def handler(ws: ServerConnection) -> None:
        await recv(ws)
        await send(ws, welcome(session_id="s1", epoch="e1", offset=0, recovered=True))
        for offset in (1, 1, 2, 1, 2, 3):
            await send(ws, message(offset))
        await send(ws, {"type": "status", "user": "bob", "status": "idle", "ts": 0.0})
        await ws.wait_closed()

    async with running(handler) as base, ChatClient(f"{base}/ws/chat/s1", "t") as client:
        offsets = []
        async for event in client.events():
            if event["type"] == "message":
                offsets.append(event["offset"])
            if event["type"] == "status":
                break
        assert offsets == [1, 2, 3] and client.last_offset == 3


async def test_reconnects_and_resumes_after_1011(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    states: list[str] = []
    async with ChatClient(url, "tok", **FAST) as client:
        client.on("state", lambda e: states.append(e["state"]))
        await client.wait_acked(await client.send_message({"text": "one"}), timeout=3)
        chat.store({"text": "missed"})  # stored while the client is away: replayed on resume
        await chat.sockets[0].close(1011, "internal")
        await chat.until(lambda: len(chat.hellos) == 2)
        assert chat.hellos[1]["resume"] == {"offset": 1, "epoch": "e1"}
        assert await messages_until(client, 2) == [1, 2]
        close = await client.next_event("close", timeout=3)
        assert close["code"] == 1011 and close["reconnect"] is True
    assert states[:2] == ["reconnecting", "open"]


async def test_reconnects_after_an_abrupt_drop(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    async with ChatClient(url, "tok", **FAST) as client:
        await chat.until(lambda: len(chat.sockets) == 1)
        chat.sockets[0].transport.abort()
        close = await client.next_event("close", timeout=3)
        assert close["code"] == 1006 and close["reconnect"] is True
        await chat.until(lambda: len(chat.sockets) == 1 and len(chat.hellos) == 2)
        message_id = await client.send_message({"text": "after"})
        assert await client.wait_acked(message_id, timeout=3) == 1


async def test_unacked_message_is_resent_with_same_id_and_shown_once(
    server: tuple[ChatServer, str],
) -> None:
    chat, url = server
    chat.store_then_close = 1  # stored, then the connection ends before the ack
    async with ChatClient(url, "tok", **FAST) as client:
        message_id = await client.send_message({"text": "once"})
        assert await client.wait_acked(message_id, timeout=3) == 1
        sent = [f["id"] for f in chat.of_type("message")]
        assert sent == [message_id, message_id]
        assert chat.hellos[1]["resume"] == {"offset": 0, "epoch": "e1"}
        await chat.broadcast(chat.store({"text": "next"}))
        assert await messages_until(client, 2) == [1, 2]


async def test_message_sent_before_connect_is_queued(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    client = ChatClient(url, "tok", **FAST)
    message_id = await client.send_message({"text": "early"}, id="fixed-id")
    assert message_id == "fixed-id" and client.pending == ["fixed-id"]
    async with client:
        assert await client.wait_acked("fixed-id", timeout=3) == 1
    assert chat.log[0]["id"] == "fixed-id"


@pytest.mark.parametrize("code", [4401, 4403, 4404])
async def test_no_reconnect_after_refusal(server: tuple[ChatServer, str], code: int) -> None:
    chat, url = server
    chat.reject = [code]
    client = ChatClient(url, "bad", **FAST)
    with pytest.raises(ConnectError) as refused:
        await client.connect(timeout=3)
    assert refused.value.code == code
    assert client.state == "closed" and client.close_code == code and len(chat.hellos) == 1


async def test_no_reconnect_after_4403_mid_session(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    client = ChatClient(url, "tok", **FAST)
    await client.connect(timeout=3)
    chat.refuse = ["rate_limited"]  # keeps the message pending
    waiting = asyncio.ensure_future(client.wait_acked(await client.send_message({"x": 1})))
    await chat.until(lambda: bool(chat.of_type("message")))
    chat.reject = [4403]
    await chat.sockets[0].close(4403, "forbidden")
    events = [e async for e in client.events()]  # ends when the client closes for good
    assert events[-1] == {"type": "close", "code": 4403, "reason": "forbidden", "reconnect": False}
    assert client.state == "closed" and len(chat.hellos) == 1
    with pytest.raises(ClientClosed):
        await waiting
    with pytest.raises(ClientClosed):
        await client.request_history()


async def test_heartbeat_pings() -> None:
    chat = ChatServer(heartbeat_s=0.05)
    async with running(chat.handler) as base, ChatClient(f"{base}/ws/chat/s1", "t"):
        await chat.until(lambda: len(chat.of_type("ping")) >= 2)
    ids = [f["id"] for f in chat.of_type("ping")]
    assert ids[:2] == [1, 2]


async def test_silent_connection_is_dropped_and_reconnected() -> None:
    chat = ChatServer()
    hellos = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal hellos
        hellos += 1
        if hellos == 1:  # welcome, then never a frame again: no pong, nothing
            await recv(ws)
            await send(ws, welcome(0.05, session_id="s1", epoch="e1", offset=0, recovered=True))
            await ws.wait_closed()
        else:
            await chat.handler(ws)

    async with running(handler) as base, ChatClient(f"{base}/ws/chat/s1", "t", **FAST) as c:
        close = await c.next_event("close", timeout=3)
        assert close["reason"] == "heartbeat timeout" and close["reconnect"] is True
        await chat.until(lambda: len(chat.hellos) == 1)


async def test_catches_up_through_history_when_not_recovered(
    server: tuple[ChatServer, str],
) -> None:
    chat, url = server
    for i in (1, 2):
        chat.store({"n": i})
    client = ChatClient(url, "tok", **FAST)
    await client.connect(timeout=3)
    try:
        await chat.broadcast(chat.store({"n": 3}))
        assert await messages_until(client, 3) == [3]
        for i in range(4, 9):
            chat.store({"n": i})  # 4..8 stored while the client is away
        chat.retained_from = 6  # ...and 4, 5 already deleted: not recoverable
        live = chat.store({"n": 9})
        chat.log.pop()  # not in the log at welcome time: a live message, sent before history
        chat.after_welcome = [live]
        await chat.sockets[0].close(1011)
        recovered = await client.next_event("welcome", timeout=3)  # first welcome
        assert recovered["recovered"] is True
        gap = await client.next_event("welcome", timeout=3)
        assert gap["recovered"] is False
        assert await messages_until(client, 9) == [6, 7, 8, 9]
        assert client.last_offset == 9
        assert chat.of_type("history")[0]["before"] == 9
    finally:
        await client.disconnect()


async def test_live_gap_is_filled_through_history(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    async with ChatClient(url, "tok", **FAST) as client:
        await chat.broadcast(chat.store({"n": 1}))
        assert await messages_until(client, 1) == [1]
        for i in (2, 3):
            chat.store({"n": i})  # stored, but their broadcast never reaches the client
        await chat.broadcast(chat.store({"n": 4}))
        await chat.broadcast(chat.store({"n": 5}))  # held while 2, 3 are fetched
        assert await messages_until(client, 5) == [2, 3, 4, 5]
        assert chat.of_type("history")[0]["before"] == 4 and client.last_offset == 5


async def test_new_epoch_starts_from_the_welcome_offset(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    async with ChatClient(url, "tok", **FAST) as client:
        await client.wait_acked(await client.send_message({"a": 1}), timeout=3)
        chat.epoch, chat.log = "e2", []
        for i in range(3):
            chat.store({"n": i})
        await chat.sockets[0].close(1001)
        await client.next_event("welcome", timeout=3)
        assert (await client.next_event("welcome", timeout=3))["recovered"] is False
        assert client.epoch == "e2" and client.last_offset == 3
        await chat.broadcast(chat.store({"n": "live"}))
        assert await messages_until(client, 4) == [1, 4]
        assert (await client.request_history(limit=2))["messages"][0]["offset"] == 3


async def test_request_history(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    for i in range(5):
        chat.store({"n": i})
    async with ChatClient(url, "tok") as client:
        page = await client.request_history(before=5, limit=3)
        assert [m["offset"] for m in page["messages"]] == [2, 3, 4]
        assert page["complete"] is False
        first = await client.request_history(before=2)
        assert [m["offset"] for m in first["messages"]] == [1] and first["complete"] is True
        assert client.last_offset == 5  # history does not move the live position


async def test_callbacks_sync_async_and_wildcard(server: tuple[ChatServer, str]) -> None:
    _, url = server
    client = ChatClient(url, "tok")
    texts: list[str] = []
    kinds: list[str] = []
    got = asyncio.Event()

    async def on_message(event: Event) -> None:
        got.set()

    client.on("message", lambda e: texts.append(e["body"]["text"]))
    client.on("message", on_message)
    remove = client.on("*", lambda e: kinds.append(e["type"]))
    async with client:
        await client.send_message({"text": "hello"})
        await asyncio.wait_for(got.wait(), 3)
        remove()
        await client.send_status("typing")
        await client.next_event("status", timeout=3)
    assert texts == ["hello"]
    assert kinds[:3] == ["state", "state", "welcome"] and "message" in kinds
    assert "status" not in kinds


async def test_disconnect_stops_for_good(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    client = ChatClient(url, "tok", **FAST)
    await client.connect(timeout=3)
    await client.disconnect()
    assert client.state == "closed" and client.close_code == 1000
    events = [e async for e in client.events()]
    assert events[-1]["type"] == "close" and events[-1]["code"] == 1000
    await chat.until(lambda: not chat.sockets)
    assert len(chat.hellos) == 1


async def test_refused_message_fails_its_wait(server: tuple[ChatServer, str]) -> None:
    chat, url = server
    chat.refuse = ["invalid_message"]
    async with ChatClient(url, "tok") as client:
        message_id = await client.send_message({"text": "bad"})
        with pytest.raises(ServerError) as refused:
            await client.wait_acked(message_id, timeout=3)
        assert refused.value.code == "invalid_message" and client.pending == []
        assert (await client.next_event("error", timeout=3))["id"] == message_id
        with pytest.raises(KeyError):
            await client.wait_acked("never-sent")


async def test_rate_limited_message_is_sent_again(
    server: tuple[ChatServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    chat, url = server
    monkeypatch.setattr(chat_module, "_RATE_LIMIT_RETRY_S", 0.01)
    chat.refuse = ["rate_limited"]
    async with ChatClient(url, "tok") as client:
        message_id = await client.send_message({"text": "slow down"})
        assert await client.wait_acked(message_id, timeout=3) == 1


def test_session_id_from_url() -> None:
    assert session_from_url("ws://h:1/ws/chat/group%201") == "group 1"
    assert session_from_url("wss://h/prefix/ws/chat/s9/") == "s9"
    with pytest.raises(ValueError):
        session_from_url("ws://h/ws/notifications")
    with pytest.raises(ValueError):
        ChatClient("http://h/ws/chat/s1", "t")
    assert ChatClient("ws://h/x", "t", session_id="given").session_id == "given"
