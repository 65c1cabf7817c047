"""HostClient's contributions (actors/host/client.py): batched to the host, and bounded in
bytes on their way there, against a scripted actor (the unit's boundary: Ray; the object
store is stood in for too)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.blobs import Blob
from actors.host.client import HostClient
from actors.host.messages import SubmitItem
from confide.analytics import StreamRef
from confide.errors import NotFound, Overloaded

from .support import until

REF = StreamRef("fhe:mood", "fhe", "stream:fhe:mood", "k1")


class Actor:
    """`fhe_submits.remote(items)`: records each call; answers once `release` is set."""

    def __init__(self) -> None:
        self.calls: list[list[SubmitItem]] = []
        self.release = asyncio.Event()
        self.fhe_submits = self

    def remote(self, items: list[SubmitItem]) -> Any:
        self.calls.append(items)

        async def answer() -> list[Any]:
            await self.release.wait()
            return [NotFound("no such key") if i.submit_id == "gone" else None for i in items]

        return answer()


@pytest.fixture(autouse=True)
def _no_object_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Blob, "put", classmethod(lambda cls, data: cls("ref", len(data))))


async def test_contributions_past_the_bytes_limit_are_overloaded() -> None:
    actor = Actor()
    client = HostClient(actor, submit_bytes=250)
    first = [asyncio.create_task(client.fhe_submit(REF, b"x" * 100, "u", str(i)))
             for i in range(2)]
    await until(lambda: client.submit_bytes == 200)
    with pytest.raises(Overloaded):  # 300 > 250: refused, nothing sent
        await client.fhe_submit(REF, b"x" * 100, "u", "3")
    assert sum(len(c) for c in actor.calls) == 2
    actor.release.set()
    await asyncio.gather(*first)
    assert client.submit_bytes == 0
    await client.fhe_submit(REF, b"x" * 100, "u", "4")  # room again


async def test_an_item_answered_with_an_error_raises_it_alone() -> None:
    actor = Actor()
    actor.release.set()
    client = HostClient(actor)
    ok = client.fhe_submit(REF, b"x", "u", "fine")
    gone = client.fhe_submit(REF, b"x", "u", "gone")
    results = await asyncio.gather(ok, gone, return_exceptions=True)
    assert results[0] is None and isinstance(results[1], NotFound)
    assert client.submit_bytes == 0
