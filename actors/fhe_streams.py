"""Encrypted aggregates on a host: `fhe:<name>` streams per key, and chat insights.

Contributions wait briefly in a per-(stream, key) queue, then one `fold` request to the
FHE workers adds them all to the running sum (limb kernels, batched). The new sum is
stored before the contributors get their `ack`; subscribers (the key's owner only) get
an `aggregate` at most once a second.

Contributions arrive as blobs (actors/blobs.py): the gateway decoded the ciphertext and
put it in Ray's object store, and the worker that sums it fetches it, so the host only
queues references.

Submits are idempotent by (user, stream, id): the new sum and the ids it counts are
stored in one transaction (`Store.fold_aggregate`), and before each fold the ids of its
batch are looked up at once (`Store.fhe_contributions_seen`), so a resubmitted id is acked
again and not counted twice, across host restarts too. The host's queue is bounded in
bytes (`fhe_host_queue_bytes`): past it a submit is refused `overloaded`. A fold that
finishes after its key was deleted stores nothing (the store checks the key in the same
transaction), and the in-memory aggregate goes with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.blobs import Blob
from actors.fhe_client import FheWorkers
from actors.fhe_compute import LOST, FoldRequest, FoldResult, ScoreRequest
from actors.ray_errors import unwrap
from confide import b64
from confide.analytics import StreamRef, Throttle
from confide.auth import Principal
from confide.config import Settings
from confide.errors import (
    ConfideError,
    Forbidden,
    Internal,
    InvalidMessage,
    NotFound,
    Overloaded,
)
from confide.events import Event
from confide.protocol import Insight
from confide.store import FheKeyRecord, Store

log = logging.getLogger("confide.fhe")

MAX_FOLD = 256


#: (user, submit id) of a contribution, or None when it has no identity.
Ident = tuple[str, str] | None


@dataclass
class _Pending:
    blob: Blob
    done: asyncio.Future[None]
    ident: Ident


@dataclass
class _Aggregate:
    ref: StreamRef
    count: int
    total: bytes | None
    pending: list[_Pending] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    dirty: bool = False
    throttle: Throttle = field(default_factory=Throttle)
    touched: float = field(default_factory=time.monotonic)
    #: Contributions queued or being folded, by identity (a resubmit waits on the first).
    inflight: dict[tuple[str, str], asyncio.Future[None]] = field(default_factory=dict)
    deleted: bool = False


class FheStreams:
    def __init__(
        self, settings: Settings, store: Store, publish: Callable[[Event], None]
    ) -> None:
        self.settings = settings
        self.store = store
        self.publish = publish
        self._handle: Any = None
        self._aggregates: dict[str, _Aggregate] = {}
        self._keys: dict[str, FheKeyRecord] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        #: Bytes of contributions queued on this host, not yet taken into a fold.
        self.queued_bytes = 0
        #: Most worker replicas one fold's partial sums were spread over (figures).
        self.tree_workers = 0
        #: Whether a topic has subscribers on this host (set by the host).
        self.is_watched: Callable[[str], bool] = lambda topic: False

    @property
    def worker(self) -> FheWorkers:
        if self._handle is None:
            self._handle = FheWorkers.of_app(self.settings.app_name).handle
        return FheWorkers(self._handle)

    async def key(self, key_id: str) -> FheKeyRecord:
        rec = self._keys.get(key_id)
        if rec is None:
            rec = await asyncio.to_thread(self.store.get_fhe_key, key_id)
            if rec is None:
                raise NotFound("no such key")
            self._keys[key_id] = rec
        return rec

    @property
    def queued_count(self) -> int:
        """Contributions queued on this host, not yet taken into a fold."""
        return sum(len(agg.pending) for agg in self._aggregates.values())

    def forget_key(self, key_id: str) -> None:
        """The key was deleted: drop it and its aggregates (in-flight folds store nothing)."""
        self._keys.pop(key_id, None)
        for topic, agg in list(self._aggregates.items()):
            if agg.ref.key_id == key_id:
                agg.deleted = True
                del self._aggregates[topic]

    async def _aggregate(self, ref: StreamRef) -> _Aggregate:
        agg = self._aggregates.get(ref.topic)
        if agg is not None:
            agg.touched = time.monotonic()
            return agg
        lock = self._loading.setdefault(ref.topic, asyncio.Lock())
        async with lock:
            agg = self._aggregates.get(ref.topic)
            if agg is None:
                assert ref.key_id is not None
                saved = await asyncio.to_thread(self.store.load_aggregate, ref.name, ref.key_id)
                count, total = saved if saved is not None else (0, None)
                agg = self._aggregates[ref.topic] = _Aggregate(ref, count, total)
        self._loading.pop(ref.topic, None)
        return agg

    def evict_idle(self, cutoff: float, watched: set[str]) -> None:
        """Drop idle aggregates from memory (their sums are in the store) and cached keys."""
        for topic, agg in list(self._aggregates.items()):
            busy = agg.pending or (agg.task is not None and not agg.task.done())
            busy = busy or bool(agg.inflight)
            if not busy and not agg.dirty and topic not in watched and agg.touched < cutoff:
                del self._aggregates[topic]
        self._keys.clear()

    # ------------------------------------------------------------- analytics

    async def submit(self, ref: StreamRef, blob: Blob, user: str | None = None,
                     submit_id: str | None = None) -> None:
        """Fold one contribution in; returns once the new sum is stored (or, when
        (user, submit_id) was already counted in this stream, once that is known)."""
        assert ref.key_id is not None
        await self.key(ref.key_id)
        ident: Ident = (user, submit_id) if user is not None and submit_id is not None else None
        agg = await self._aggregate(ref)
        if ident is not None:
            earlier = agg.inflight.get(ident)
            if earlier is not None:  # the same contribution is on its way: its answer
                await asyncio.shield(earlier)
                return
        if self.queued_bytes + blob.size > self.settings.fhe_host_queue_bytes:
            raise Overloaded("encrypted computation is overloaded; retry later")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        agg.pending.append(_Pending(blob, done, ident))
        self.queued_bytes += blob.size
        if ident is not None:
            agg.inflight[ident] = done
            done.add_done_callback(lambda _: agg.inflight.pop(ident, None))
        if agg.task is None or agg.task.done():
            agg.task = asyncio.create_task(self._drain(agg))
        await asyncio.shield(done)  # a caller going away does not cancel the fold

    async def _drain(self, agg: _Aggregate) -> None:
        await asyncio.sleep(self.settings.fhe_flush_s)  # gather what arrives meanwhile
        while agg.pending:
            batch, agg.pending = agg.pending[:MAX_FOLD], agg.pending[MAX_FOLD:]
            self.queued_bytes -= sum(p.blob.size for p in batch)
            try:
                fresh = await self._not_counted(agg, batch)
                if fresh:
                    await self._fold(agg, fresh)
            except Exception as exc:  # noqa: BLE001 - every waiter of the batch gets it
                err = unwrap(exc)
                if not isinstance(err, ConfideError):
                    log.error("folding an aggregate failed: %s", type(err).__name__)
                    err = Internal("encrypted computation failed; retry later")
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(err)
        self._evict_if_unwatched(agg)

    async def _not_counted(self, agg: _Aggregate, batch: list[_Pending]) -> list[_Pending]:
        """The batch less the contributions already counted in this stream (acked now):
        one store lookup per fold. Exact, since a stream's folds run one at a time."""
        idents = [p.ident for p in batch if p.ident is not None]
        if not idents:
            return batch
        seen = await asyncio.to_thread(self.store.fhe_contributions_seen, agg.ref.name, idents)
        fresh = []
        for p in batch:
            if p.ident is not None and p.ident in seen:
                p.done.set_result(None)
            else:
                fresh.append(p)
        return fresh

    async def _fold(self, agg: _Aggregate, batch: list[_Pending]) -> None:
        assert agg.ref.key_id is not None
        if agg.deleted:
            raise NotFound("no such key")
        result = await self._sum(agg.ref.key_id, agg.total, [p.blob for p in batch])
        accepted = [p for p, r in zip(batch, result.refused, strict=True) if r is None]
        if accepted and result.total is not None:
            idents = [p.ident for p in accepted if p.ident is not None]
            stored = await asyncio.to_thread(
                self.store.fold_aggregate, agg.ref.name, agg.ref.key_id,
                agg.count + len(accepted), result.total, idents)
            if not stored or agg.deleted:  # the key went away meanwhile: nothing counts
                self.forget_key(agg.ref.key_id)
                raise NotFound("no such key")
            agg.count += len(accepted)
            agg.total = result.total
            agg.dirty = True
        for p, reason in zip(batch, result.refused, strict=True):
            if p.done.done():
                continue
            if reason is None:
                p.done.set_result(None)
            elif reason == LOST:
                p.done.set_exception(Internal(LOST))
            else:
                p.done.set_exception(InvalidMessage(reason))

    async def _sum(self, key_id: str, total: bytes | None, cts: list[Blob]) -> FoldResult:
        """`total` plus the valid `cts`. A batch of at least two shards is split into
        shards of `fhe_shard_size` folded concurrently (partial sums, spread over the
        worker replicas by Serve), then one fold adds the partial sums to the total: a
        tree of depth two, so a busy stream keeps several workers busy and its backlog
        shows as ongoing requests to the autoscaler."""
        size = self.settings.fhe_shard_size
        if len(cts) < 2 * size:
            return await self.worker.fold(FoldRequest(key_id, total, tuple(cts)))
        shards = [tuple(cts[i : i + size]) for i in range(0, len(cts), size)]
        parts: list[FoldResult] = await asyncio.gather(*(
            self.worker.fold(FoldRequest(key_id, None, shard))
            for shard in shards))
        self.tree_workers = max(self.tree_workers, len({p.worker for p in parts}))
        partials = tuple(p.total for p in parts if p.total is not None)
        refused = tuple(r for p in parts for r in p.refused)
        if not partials:
            return FoldResult(total, refused)
        final = await self.worker.fold(FoldRequest(key_id, total, partials))
        if any(r is not None for r in final.refused):  # partial sums are ours: never
            raise Internal("encrypted computation failed; retry later")
        return FoldResult(final.total, refused)

    def _evict_if_unwatched(self, agg: _Aggregate) -> None:
        """An aggregate nobody watches leaves memory once its sum is stored."""
        topic = agg.ref.topic
        if (not agg.pending and not self.is_watched(topic)
                and self._aggregates.get(topic) is agg):
            del self._aggregates[topic]

    async def check_owner(self, ref: StreamRef, who: Principal) -> None:
        assert ref.key_id is not None
        if (await self.key(ref.key_id)).owner != who.user:
            raise Forbidden("only the key's owner may watch its aggregates")

    async def frame(self, ref: StreamRef) -> dict[str, Any] | None:
        """The `aggregate` frame of a stream, or None before the first contribution."""
        agg = await self._aggregate(ref)
        if agg.total is None or ref.key_id is None:
            return None
        out: dict[str, Any] = {
            "type": "aggregate", "stream": ref.name, "key_id": ref.key_id,
            "count": agg.count, "sum": b64.encode(agg.total), "ts": time.time(),
        }
        try:
            mean = await self.worker.mean(ref.key_id, agg.total, agg.count)
        except ConfideError:
            mean = None
        if mean is not None:
            out["mean"] = b64.encode(mean)
        return out

    async def publish_due(self, topics: set[str], now: float) -> None:
        """Publish the aggregates that changed, at most once a second each."""
        for topic in topics:
            agg = self._aggregates.get(topic)
            if agg is None or not agg.dirty:
                continue
            if not agg.throttle.due({"count": agg.count}, now):
                continue
            agg.dirty = False
            frame = await self.frame(agg.ref)
            if frame is not None:
                self.publish(Event(topic, frame))

    # ----------------------------------------------------------------- chat

    async def check_features(self, config: dict[str, Any], features: dict[str, Any]) -> bytes:
        """A message's `features` against its session's FHE set-up: the ciphertext bytes."""
        from fhe.errors import FheError
        from fhe.keys import KeyMeta
        from fhe.ops import check_submission

        fhe = config.get("fhe")
        if not fhe:
            raise InvalidMessage("this session has no encrypted insights configured")
        if features.get("key_id") != fhe["key_id"]:
            raise InvalidMessage("features are not under the session's key")
        data = b64.decode_ciphertext(str(features.get("ciphertext", "")))
        meta = KeyMeta.from_dict((await self.key(fhe["key_id"])).meta)
        try:
            await asyncio.to_thread(check_submission, data, meta)
        except FheError as e:
            raise InvalidMessage(str(e)) from None
        return data

    async def insight(self, topic: str, offset: int, config: dict[str, Any], data: bytes) -> None:
        """Score a message's features and send the encrypted score to the therapists."""
        fhe = config["fhe"]
        model = fhe["model"]
        req = ScoreRequest(fhe["key_id"], data, tuple(model["weights"]), float(model["bias"]))
        try:
            score = await self.worker.score(req)
        except Exception as exc:  # noqa: BLE001 - an insight is best effort; chat goes on
            log.warning("insight for offset %d failed: %s", offset, type(exc).__name__)
            return
        frame = Insight(for_offset=offset, key_id=fhe["key_id"], model=model["name"],
                        ciphertext=b64.encode(score))
        self.publish(Event(topic, frame.dump(), only_roles=frozenset({"therapist"})))


def check_model_fits(model: dict[str, Any], meta: dict[str, Any]) -> None:
    """A session's model against its key: weights <= slots, finite, and rotation keys to
    sum the slots (InvalidMessage saying which)."""
    from fhe.keys import KeyMeta
    from fhe.models import LinearModel

    key = KeyMeta.from_dict(meta)
    try:
        LinearModel.from_dict(model).check_fits(key.slots)
    except ValueError as e:
        raise InvalidMessage(f"model: {e}") from None
    steps = {1 << i for i in range(key.slots.bit_length() - 1)}
    if key.slots & (key.slots - 1) or not steps <= set(key.rotation_steps):
        raise InvalidMessage("key: no rotation keys for summing its slots (steps 1, 2, 4, ...)")
