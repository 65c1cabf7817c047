"""Batcher (actors/host/batcher.py): one call in flight, everything queued meanwhile next."""

from __future__ import annotations

import asyncio

import pytest

from actors.host.batcher import Batcher

from .support import WAIT, until


class Remote:
    """A fake remote method: records each call's items; the test releases each call."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release: asyncio.Queue[Exception | None] = asyncio.Queue()

    async def __call__(self, items: list[int]) -> list[str]:
        self.calls.append(items)
        failure = await self.release.get()
        if failure is not None:
            raise failure
        return [f"answer-{i}" for i in items]


def batcher(remote: Remote, max_batch: int = 100) -> Batcher[int, str]:
    return Batcher(remote, lambda item, exc: f"failed-{item}-{type(exc).__name__}", max_batch)


async def test_items_queued_during_a_call_leave_together_in_order() -> None:
    remote = Remote()
    b = batcher(remote)
    answers: list[str] = []
    b.add(1, answers.append)
    await until(lambda: len(remote.calls) == 1)
    for i in (2, 3, 4):
        b.add(i, answers.append)  # the first call is still in flight
    assert remote.calls == [[1]]
    remote.release.put_nowait(None)
    await until(lambda: len(remote.calls) == 2)
    assert remote.calls == [[1], [2, 3, 4]]
    remote.release.put_nowait(None)
    await until(lambda: len(answers) == 4)
    assert answers == ["answer-1", "answer-2", "answer-3", "answer-4"]
    assert (b.calls, b.items) == (2, 4)


async def test_batches_are_capped() -> None:
    remote = Remote()
    b = batcher(remote, max_batch=2)
    for i in range(5):
        b.add(i, lambda _: None)
    for _ in range(3):
        remote.release.put_nowait(None)
    await until(lambda: b.items == 5)
    assert remote.calls == [[0, 1], [2, 3], [4]]


async def test_a_failed_call_answers_each_of_its_items_and_the_next_call_goes_on() -> None:
    remote = Remote()
    b = batcher(remote)
    first = asyncio.ensure_future(b.ask(1))
    await until(lambda: len(remote.calls) == 1)
    second = asyncio.ensure_future(b.ask(2))
    remote.release.put_nowait(RuntimeError("host died"))
    assert await asyncio.wait_for(first, WAIT) == "failed-1-RuntimeError"
    remote.release.put_nowait(None)
    assert await asyncio.wait_for(second, WAIT) == "answer-2"


async def test_a_callback_that_raises_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote = Remote()
    b = batcher(remote)
    got: list[str] = []

    def broken(_: str) -> None:
        raise ValueError("boom")

    b.add(1, broken)
    b.add(2, got.append)
    remote.release.put_nowait(None)
    await until(lambda: got == ["answer-2"])
    assert "failed to take its answer" in caplog.text


async def test_a_cancelled_waiter_leaves_the_batch_intact() -> None:
    remote = Remote()
    b = batcher(remote)
    waiter = asyncio.ensure_future(b.ask(1))
    await until(lambda: len(remote.calls) == 1)
    waiter.cancel()
    other = asyncio.ensure_future(b.ask(2))
    remote.release.put_nowait(None)
    remote.release.put_nowait(None)
    assert await asyncio.wait_for(other, WAIT) == "answer-2"


async def test_several_calls_in_flight_when_allowed() -> None:
    """With `max_inflight`, a new item leaves at once while a call is out (up to the
    limit); past it, items wait and leave together with the first call that returns."""
    remote = Remote()
    b: Batcher[int, str] = Batcher(remote, lambda item, exc: "failed", 100, max_inflight=2)
    answers: list[str] = []
    b.add(1, answers.append)
    b.add(2, answers.append)  # the first call has not started: 1 and 2 go together
    await until(lambda: len(remote.calls) == 1)
    b.add(3, answers.append)  # one call out, room for a second
    await until(lambda: len(remote.calls) == 2)
    b.add(4, answers.append)
    b.add(5, answers.append)  # both out: these wait
    assert remote.calls == [[1, 2], [3]]
    remote.release.put_nowait(None)
    await until(lambda: len(remote.calls) == 3)
    assert remote.calls[2] == [4, 5]
    remote.release.put_nowait(None)
    remote.release.put_nowait(None)
    await until(lambda: len(answers) == 5)
    assert sorted(answers) == [f"answer-{i}" for i in range(1, 6)]


async def test_an_item_added_as_the_last_sender_finishes_still_leaves() -> None:
    """A sender whose loop just ended is done before its callbacks run: it must not count."""
    remote = Remote()
    b = batcher(remote)
    answers: list[str] = []
    b.add(1, answers.append)
    await until(lambda: len(remote.calls) == 1)
    remote.release.put_nowait(None)
    await until(lambda: answers == ["answer-1"])
    b.add(2, answers.append)
    await until(lambda: len(remote.calls) == 2)
    remote.release.put_nowait(None)
    await until(lambda: answers == ["answer-1", "answer-2"])
