"""actors.blobs and the worker's side of it (actors.fhe_compute.fetched / with_lost):
blobs' bytes fetched, a lost blob refused alone at its own position. Object references
are stood in for by futures (the unit's boundary: Ray's object store)."""

from __future__ import annotations

import asyncio

from actors.blobs import Blob, fetch
from actors.fhe_compute import LOST, FoldRequest, FoldResult, fetched, with_lost
from confide.errors import NotFound


def ref(value: bytes | BaseException) -> asyncio.Future[bytes]:
    f: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    if isinstance(value, BaseException):
        f.set_exception(value)
    else:
        f.set_result(value)
    return f


async def test_fetch_keeps_bytes_and_fetches_blobs_in_order() -> None:
    items = (b"a", Blob(ref(b"b"), 1), Blob(ref(RuntimeError("owner died")), 1), b"d")
    assert await fetch(items) == [b"a", b"b", None, b"d"]


async def test_lost_contributions_refused_at_their_positions() -> None:
    req = FoldRequest("k", b"total", (Blob(ref(RuntimeError("lost")), 1), b"x",
                                      Blob(ref(b"y"), 1), Blob(ref(RuntimeError("lost")), 1)))
    ready, lost = await fetched(req)
    assert ready == FoldRequest("k", b"total", (b"x", b"y")) and lost == [0, 3]
    result = with_lost(FoldResult(b"sum", (None, "bad")), lost)
    assert result == FoldResult(b"sum", (LOST, None, "bad", LOST))
    err = NotFound("no such key")
    assert with_lost(err, lost) is err
    assert with_lost(FoldResult(b"s", (None,)), []) == FoldResult(b"s", (None,))
