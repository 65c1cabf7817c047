"""GroupCommitter: batches chat messages per store write, publishes in order after the write.

Plain asyncio, no Ray. The write runs in a thread; tests hold it with threading events
(never sleeps) to decide what queues up behind it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from actors.host.commit import GroupCommitter
from confide.events import Event
from confide.store.base import StoredMessage

WAIT = 5.0  # seconds a test waits for a thread before it fails rather than hangs


def item(offset: int, session_id: str = "s1") -> tuple[StoredMessage, Event]:
    m = StoredMessage(session_id, offset, "ep", f"m{offset}", "alice", 0.0, {}, False)
    return m, Event(f"chat:{session_id}", m.frame())


class Recorder:
    """Write/publish/on_failure callbacks that log what happened, in order."""

    def __init__(self, fail_batches: set[int] | None = None) -> None:
        self.log: list[tuple[str, Any]] = []
        self.writes: list[list[tuple[str, int]]] = []
        self.failures: list[set[str]] = []
        self.fail_batches = fail_batches or set()
        self.gate: threading.Event | None = None  # when set, the first write waits on it
        self.entered = threading.Event()

    def write(self, messages: list[StoredMessage]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
            self.gate = None
        n = len(self.writes)
        self.writes.append([(m.session_id, m.offset) for m in messages])
        if n in self.fail_batches:
            raise OSError("disk full")
        self.log.append(("write", [m.offset for m in messages]))

    def publish(self, event: Event) -> None:
        self.log.append(("publish", event.frame["offset"]))

    def on_failure(self, sessions: set[str]) -> None:
        self.failures.append(set(sessions))
        self.log.append(("failure", sorted(sessions)))

    def committer(self, max_batch: int = 512) -> GroupCommitter:
        return GroupCommitter(self.write, self.publish, self.on_failure, max_batch=max_batch)


async def test_single_commit() -> None:
    rec = Recorder()
    gc = rec.committer()
    await asyncio.wait_for(gc.commit(*item(1)), WAIT)
    assert rec.log == [("write", [1]), ("publish", 1)]
    assert (gc.batches, gc.committed) == (1, 1)


async def test_concurrent_commits_batched_and_published_in_order() -> None:
    rec = Recorder()
    gc = rec.committer()
    await asyncio.wait_for(asyncio.gather(*(gc.commit(*item(i)) for i in range(1, 21))), WAIT)
    assert len(rec.writes) < 20
    assert gc.batches == len(rec.writes)
    assert gc.committed == 20
    assert [o for batch in rec.writes for _, o in batch] == list(range(1, 21))
    published = [o for kind, o in rec.log if kind == "publish"]
    assert published == list(range(1, 21))
    # every message is published only after the write that holds it
    written: set[int] = set()
    for kind, value in rec.log:
        if kind == "write":
            written.update(value)
        else:
            assert value in written


async def test_commits_queued_behind_a_write_form_one_batch() -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    gc = rec.committer()
    first = asyncio.ensure_future(gc.commit(*item(1)))
    assert await asyncio.to_thread(rec.entered.wait, WAIT)
    rest = [asyncio.ensure_future(gc.commit(*item(i))) for i in range(2, 12)]
    await asyncio.sleep(0)  # let them queue (a yield, not a wait on time)
    assert not first.done()
    rec.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), WAIT)
    assert [[o for _, o in b] for b in rec.writes] == [[1], list(range(2, 12))]
    assert gc.batches == 2


async def test_max_batch_splits() -> None:
    rec = Recorder()
    gc = rec.committer(max_batch=3)
    await asyncio.wait_for(asyncio.gather(*(gc.commit(*item(i)) for i in range(1, 9))), WAIT)
    assert all(len(b) <= 3 for b in rec.writes)
    assert [o for b in rec.writes for _, o in b] == list(range(1, 9))
    assert [o for k, o in rec.log if k == "publish"] == list(range(1, 9))


async def test_failed_write_fails_waiters_and_queued_same_session() -> None:
    rec = Recorder(fail_batches={0})
    rec.gate = threading.Event()
    gc = rec.committer()
    first = asyncio.ensure_future(gc.commit(*item(1, "s1")))
    assert await asyncio.to_thread(rec.entered.wait, WAIT)
    same = asyncio.ensure_future(gc.commit(*item(2, "s1")))
    other = asyncio.ensure_future(gc.commit(*item(1, "s2")))
    await asyncio.sleep(0)
    rec.gate.set()
    results = await asyncio.wait_for(
        asyncio.gather(first, same, other, return_exceptions=True), WAIT
    )
    assert isinstance(results[0], OSError)
    assert isinstance(results[1], OSError)  # queued behind the failure, same session
    assert results[2] is None  # another session goes on
    assert rec.failures == [{"s1"}]
    assert rec.writes == [[("s1", 1)], [("s2", 1)]]  # s1's queued message never written
    assert [v for k, v in rec.log if k == "publish"] == [1]  # only s2's
    assert rec.log.index(("failure", ["s1"])) < rec.log.index(("publish", 1))
    assert (gc.batches, gc.committed) == (1, 1)


async def test_nothing_published_from_a_failed_batch() -> None:
    rec = Recorder(fail_batches={0})
    gc = rec.committer()
    results = await asyncio.wait_for(
        asyncio.gather(*(gc.commit(*item(i)) for i in range(1, 4)), return_exceptions=True),
        WAIT,
    )
    assert all(isinstance(r, OSError) for r in results)
    assert not any(k == "publish" for k, _ in rec.log)
    assert rec.failures == [{"s1"}]
    # the committer keeps working afterwards
    await asyncio.wait_for(gc.commit(*item(1)), WAIT)
    assert rec.log[-1] == ("publish", 1)


async def test_cancelled_waiter_does_not_break_the_batch() -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    gc = rec.committer()
    first = asyncio.ensure_future(gc.commit(*item(1)))
    assert await asyncio.to_thread(rec.entered.wait, WAIT)
    second = asyncio.ensure_future(gc.commit(*item(2)))
    third = asyncio.ensure_future(gc.commit(*item(3)))
    await asyncio.sleep(0)
    second.cancel()
    rec.gate.set()
    await asyncio.wait_for(asyncio.gather(first, third), WAIT)
    with pytest.raises(asyncio.CancelledError):
        await second
    # the message was already ordered: it is still written and published
    assert [o for k, o in rec.log if k == "publish"] == [1, 2, 3]
