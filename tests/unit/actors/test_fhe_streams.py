"""FheStreams on a host, with a real SQLite store and a scripted worker handle (the
unit's boundary): idempotent submits (also across a host restart), the bounded queue,
deletion during an in-flight fold, eviction of unwatched aggregates."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.blobs import Blob
from actors.fhe_compute import LOST, FoldRequest, FoldResult
from actors.fhe_streams import FheStreams
from confide.analytics import StreamRef
from confide.config import Settings
from confide.errors import Internal, NotFound, Overloaded
from confide.store.base import FheKeyRecord
from confide.store.sqlite import SqliteStore

REF = StreamRef("fhe:mood", "fhe", "stream:fhe:mood", "k1")
#: A contribution: the host only passes its reference on (a worker fetches the bytes).
CT = Blob("object-ref", 100)


def is_lost(ct: bytes | Blob) -> bool:
    """The blob's owner died before a worker fetched it."""
    return isinstance(ct, Blob) and ct.ref == "lost"


def value(ct: bytes | Blob) -> int:
    """A contribution counts 1; a partial sum (digits) counts what it says."""
    return int(ct) if isinstance(ct, bytes) else 1


class Worker:
    """`fold` adds the contributions' count to a counter kept in `total`; a gate, when
    set, holds each fold until it is opened."""

    def __init__(self) -> None:
        self.folds: list[FoldRequest] = []
        self.gate: asyncio.Event | None = None
        self.fold = self

    async def _fold(self, req: FoldRequest) -> FoldResult:
        self.folds.append(req)
        if self.gate is not None:
            await self.gate.wait()
        before = int(req.total.decode()) if req.total else 0
        kept = [c for c in req.contributions if not is_lost(c)]
        total = str(before + sum(value(c) for c in kept)).encode()
        return FoldResult(total, tuple(LOST if is_lost(c) else None for c in req.contributions))

    def remote(self, req: FoldRequest) -> Any:
        return self._fold(req)


async def until(pred: Any, timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not pred():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), timeout)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "confide.db"))
    s.put_fhe_key(FheKeyRecord("k1", "dr", {}, {}, 1.0))
    yield s
    s.close()


def streams(store: SqliteStore, tmp_path: Path, **settings: Any) -> tuple[FheStreams, Worker]:
    values: dict[str, Any] = {"fhe_flush_s": 0.01} | settings
    s = FheStreams(Settings(data_dir=tmp_path, jwt_secret="x" * 32, **values), store,
                   lambda _: None)
    worker = Worker()
    s._handle = worker
    return s, worker


async def test_resubmitted_id_counted_once(store: SqliteStore, tmp_path: Path) -> None:
    fhe, worker = streams(store, tmp_path)
    await asyncio.gather(fhe.submit(REF, CT, "u1", "a"), fhe.submit(REF, CT, "u1", "a"),
                         fhe.submit(REF, CT, "u2", "a"))
    await fhe.submit(REF, CT, "u1", "a")  # after it was stored
    assert store.load_aggregate("fhe:mood", "k1") == (2, b"2")
    assert sum(len(f.contributions) for f in worker.folds) == 2
    # a new host (restart): the store remembers
    again, worker2 = streams(store, tmp_path)
    await again.submit(REF, CT, "u1", "a")
    await again.submit(REF, CT, "u2", "b")
    assert store.load_aggregate("fhe:mood", "k1") == (3, b"3")
    assert [len(f.contributions) for f in worker2.folds] == [1]


async def test_a_lost_contribution_fails_alone_and_may_be_resubmitted(
    store: SqliteStore, tmp_path: Path
) -> None:
    fhe, _ = streams(store, tmp_path)
    lost = fhe.submit(REF, Blob("lost", 100), "u1", "a")
    results = await asyncio.gather(lost, fhe.submit(REF, CT, "u2", "a"), return_exceptions=True)
    assert isinstance(results[0], Internal) and results[0].code.value == "internal"
    assert results[1] is None
    assert store.load_aggregate("fhe:mood", "k1") == (1, b"1")
    await fhe.submit(REF, CT, "u1", "a")  # not counted before: counted now
    assert store.load_aggregate("fhe:mood", "k1") == (2, b"2")


async def test_queue_bounded_in_bytes(store: SqliteStore, tmp_path: Path) -> None:
    fhe, worker = streams(store, tmp_path, fhe_host_queue_bytes=250)
    worker.gate = asyncio.Event()
    first = asyncio.create_task(fhe.submit(REF, CT, "u1", "1"))
    await until(lambda: worker.folds)  # the first is being folded: no longer queued
    queued = [asyncio.create_task(fhe.submit(REF, CT, "u1", str(i))) for i in (2, 3)]
    await until(lambda: fhe.queued_bytes == 200)
    with pytest.raises(Overloaded) as refused:
        await fhe.submit(REF, CT, "u1", "4")
    assert refused.value.code.value == "overloaded"
    worker.gate.set()
    await asyncio.gather(first, *queued)
    assert fhe.queued_bytes == 0
    await fhe.submit(REF, CT, "u1", "4")  # room again
    assert store.load_aggregate("fhe:mood", "k1") == (4, b"4")


async def test_deleted_key_not_resurrected_by_an_inflight_fold(
    store: SqliteStore, tmp_path: Path
) -> None:
    fhe, worker = streams(store, tmp_path)
    worker.gate = asyncio.Event()
    pending = asyncio.create_task(fhe.submit(REF, CT, "u1", "1"))
    await until(lambda: worker.folds)
    store.delete_fhe_key("k1")
    fhe.forget_key("k1")
    worker.gate.set()
    with pytest.raises(NotFound):
        await pending
    assert store.load_aggregate("fhe:mood", "k1") is None
    assert fhe._aggregates == {}


async def test_unwatched_aggregate_evicted_once_stored(
    store: SqliteStore, tmp_path: Path
) -> None:
    fhe, _ = streams(store, tmp_path)
    await fhe.submit(REF, CT, "u1", "1")
    await until(lambda: REF.topic not in fhe._aggregates)  # once the drain task ends
    fhe.is_watched = lambda topic: topic == REF.topic
    await fhe.submit(REF, CT, "u1", "2")
    agg = fhe._aggregates[REF.topic]
    await until(lambda: agg.task is not None and agg.task.done())
    assert fhe._aggregates[REF.topic] is agg and agg.count == 2  # watched: kept for its subscribers


async def test_busy_stream_folds_as_a_tree_of_partial_sums(
    store: SqliteStore, tmp_path: Path
) -> None:
    fhe, worker = streams(store, tmp_path, fhe_shard_size=4)
    worker.gate = asyncio.Event()
    first = asyncio.create_task(fhe.submit(REF, CT, "u0", "first"))
    await until(lambda: worker.folds)  # held: the rest queue up behind it
    rest = [asyncio.create_task(fhe.submit(REF, CT, f"u{i}", "x")) for i in range(18)]
    await until(lambda: len(fhe._aggregates[REF.topic].pending) == 18)
    worker.gate.set()
    await asyncio.gather(first, *rest)
    assert store.load_aggregate("fhe:mood", "k1") == (19, b"19")
    tree = worker.folds[1:]
    partial = [f for f in tree if f.total is None]
    assert [len(f.contributions) for f in partial] == [4, 4, 4, 4, 2]  # concurrent shards
    [final] = [f for f in tree if f.total is not None]
    assert final.total == b"1" and final.contributions == (b"4", b"4", b"4", b"4", b"2")
