"""AnalyticsClient: submit ack/error correlation, subscriptions across reconnects."""

from __future__ import annotations

import pytest
from websockets.asyncio.server import ServerConnection

from confide.client import AnalyticsClient, ServerError
from tests.unit.client.conftest import FAST, Responder, running, send


class Analytics(Responder):
    """Acks submits (an `ack` for another id first), refuses key `bad`; serves `system`
    (metrics with a connection counter) and refuses other streams."""

    async def _answer(self, ws: ServerConnection, frame: dict[str, object]) -> None:
        if frame["type"] == "submit":
            await send(ws, {"type": "ack", "id": "someone-else"})
            if frame["key_id"] == "bad":
                await send(
                    ws,
                    {
                        "type": "error",
                        "code": "invalid_message",
                        "message": "wrong key",
                        "id": frame["id"],
                    },
                )
            else:
                await send(ws, {"type": "ack", "id": frame["id"]})
        elif frame["type"] == "subscribe" and frame["stream"] == "system":
            await send(ws, {"type": "subscribed", "stream": "system"})
            await send(
                ws,
                {
                    "type": "metrics",
                    "stream": "system",
                    "ts": 1.0,
                    "data": {"connection": len(self.hellos)},
                },
            )
        elif frame["type"] == "subscribe":
            await send(ws, {"type": "error", "code": "forbidden", "message": "no"})


async def test_submit_waits_for_its_own_ack_or_error() -> None:
    server = Analytics()
    async with running(server.handler) as base, AnalyticsClient(f"{base}/ws/analytics", "t") as c:
        ack = await c.submit("fhe:mood", "k1", "Y2lwaGVy", id="s-1", timeout=3)
        assert ack == {"type": "ack", "id": "s-1"}
        with pytest.raises(ServerError) as refused:
            await c.submit("fhe:mood", "bad", "Y2lwaGVy", timeout=3)
        assert refused.value.code == "invalid_message"
        sent = server.of_type("submit")
        assert sent[0] == {
            "type": "submit",
            "id": "s-1",
            "stream": "fhe:mood",
            "key_id": "k1",
            "ciphertext": "Y2lwaGVy",
        }
        assert len(sent[1]["id"]) == 32  # a uuid4 hex when none is given


async def test_subscription_survives_a_reconnect() -> None:
    server = Analytics()
    async with (
        running(server.handler) as base,
        AnalyticsClient(f"{base}/ws/analytics", "t", **FAST) as client,
    ):
        sub = await client.subscribe("system", timeout=3)
        assert (await sub.next(timeout=3))["data"] == {"connection": 1}
        await server.sockets[0].close(1012)
        assert (await sub.next(timeout=3))["data"] == {"connection": 2}
        assert [f["stream"] for f in server.of_type("subscribe")] == ["system", "system"]
        await client.unsubscribe("system")
        assert [frame async for frame in sub] == []  # ended
        await server.until(lambda: bool(server.of_type("unsubscribe")))


async def test_forbidden_subscription_raises() -> None:
    server = Analytics()
    async with running(server.handler) as base, AnalyticsClient(f"{base}/ws/analytics", "t") as c:
        with pytest.raises(ServerError) as refused:
            await c.subscribe("session:other", timeout=3)
        assert refused.value.code == "forbidden"
        assert (await c.next_event("error", timeout=3))["code"] == "forbidden"


class Busy(Responder):
    """Answers `overloaded` to the first `busy` submits of each id, then acks."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    async def _answer(self, ws: ServerConnection, frame: dict[str, object]) -> None:
        if frame["type"] == "submit":
            tries = sum(1 for f in self.of_type("submit") if f["id"] == frame["id"])
            if tries <= self.busy:
                await send(ws, {"type": "error", "code": "overloaded",
                                "message": "retry later", "id": frame["id"]})
            else:
                await send(ws, {"type": "ack", "id": frame["id"]})


async def test_submit_retries_overloaded_with_the_same_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import confide.client.analytics as analytics

    waits: list[float] = []

    async def no_sleep(s: float) -> None:
        waits.append(s)

    server = Busy(busy=2)
    async with running(server.handler) as base, AnalyticsClient(f"{base}/ws/analytics", "t") as c:
        monkeypatch.setattr(analytics, "backoff_sleep", no_sleep)
        ack = await c.submit("fhe:mood", "k1", "Y2lwaGVy", id="s-9", timeout=3)
    assert ack == {"type": "ack", "id": "s-9"}
    assert [f["id"] for f in server.of_type("submit")] == ["s-9"] * 3
    assert len(waits) == 2 and 0 <= waits[0] <= 0.25 and 0 <= waits[1] <= 0.5


async def test_submit_gives_up_after_its_retries() -> None:
    server = Busy(busy=10)
    async with running(server.handler) as base, AnalyticsClient(f"{base}/ws/analytics", "t") as c:
        with pytest.raises(ServerError) as refused:
            await c.submit("fhe:mood", "k1", "Y2lwaGVy", id="s-10", timeout=3, retries=1)
    assert refused.value.code == "overloaded"
    assert len(server.of_type("submit")) == 2


async def test_ciphertext_connections_do_not_offer_compression() -> None:
    """Base64 ciphertexts barely deflate: the analytics client leaves compression off
    unless asked, where the other clients offer it."""
    server = Analytics()
    async with running(server.handler) as base:
        async with AnalyticsClient(f"{base}/ws/analytics", "t") as plain:
            await plain.submit("fhe:mood", "k1", "Y2lwaGVy", id="s-1", timeout=3)
        async with AnalyticsClient(f"{base}/ws/analytics", "t", compress=True) as deflate:
            await deflate.submit("fhe:mood", "k1", "Y2lwaGVy", id="s-2", timeout=3)
    assert server.offered[0] is None and "permessage-deflate" in (server.offered[1] or "")
