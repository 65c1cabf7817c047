"""NotificationsClient: auto-ack, dedupe, read acks, list, acks queued while offline."""

from __future__ import annotations

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from confide.client import NotificationsClient, ServerError
from tests.unit.client.conftest import FAST, Frame, Recorder, recv, running, send, welcome


def notification(id: str) -> Frame:
    return {
        "type": "notification",
        "id": id,
        "kind": "info",
        "title": "t",
        "body": "b",
        "data": {},
        "created_at": 1.0,
    }


class Inbox(Recorder):
    """Sends `n1`, `n1` again (a redelivery), then `n2`; answers `list`."""

    async def handler(self, ws: ServerConnection) -> None:
        self.hellos.append(await recv(ws))
        await send(ws, welcome(pending=2, unread=2))
        if len(self.hellos) == 1:
            for id in ("n1", "n1", "n2"):
                await send(ws, notification(id))
        try:
            while True:
                frame = await recv(ws)
                self.received.append(frame)
                self.changed()
                if frame["type"] == "list" and frame["state"] == "all":
                    items = [{**notification("n2"), "state": "read"}]
                    await send(ws, {"type": "notifications", "items": items})
                elif frame["type"] == "list":
                    await send(ws, {"type": "error", "code": "rate_limited", "message": "slow"})
        except ConnectionClosed:
            pass


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


async def test_notifications_are_acked_and_emitted_once(inbox: Inbox) -> None:
    async with (
        running(inbox.handler) as base,
        NotificationsClient(f"{base}/ws/notifications", "t", **FAST) as client,
    ):
        assert client.welcome is not None and client.welcome["pending"] == 2
        first = await client.next_event("notification", timeout=3)
        second = await client.next_event("notification", timeout=3)
        assert [first["id"], second["id"]] == ["n1", "n2"]
        await inbox.until(lambda: len(inbox.of_type("ack")) == 3)
        acks = [(f["id"], f["state"]) for f in inbox.of_type("ack")]
        assert acks == [("n1", "delivered"), ("n1", "delivered"), ("n2", "delivered")]
        await client.mark_read("n1")
        await inbox.until(
            lambda: inbox.of_type("ack")[-1] == {"type": "ack", "id": "n1", "state": "read"}
        )


async def test_list_and_its_errors(inbox: Inbox) -> None:
    async with (
        running(inbox.handler) as base,
        NotificationsClient(f"{base}/ws/notifications", "t") as client,
    ):
        items = await client.list(state="all", limit=10)
        assert [(i["id"], i["state"]) for i in items] == [("n2", "read")]
        with pytest.raises(ServerError) as failed:
            await client.list()
        assert failed.value.code == "rate_limited"


async def test_acks_made_offline_are_sent_after_welcome(inbox: Inbox) -> None:
    async with running(inbox.handler) as base:
        client = NotificationsClient(f"{base}/ws/notifications", "t", auto_ack=False)
        await client.mark_read("old")
        async with client:
            await inbox.until(lambda: bool(inbox.of_type("ack")))
            assert inbox.of_type("ack")[0] == {"type": "ack", "id": "old", "state": "read"}
            await client.next_event("notification", timeout=3)
        assert len(inbox.of_type("ack")) == 1  # auto_ack=False: nothing else was acked
