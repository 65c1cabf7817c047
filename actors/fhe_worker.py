"""The FHE worker deployment: key registration, batched limb aggregation, scoring, means.

Workers are a Serve deployment that autoscales on ongoing requests, with `@serve.batch`
gathering concurrent requests. Everything here is pure (same inputs, same bytes out), so
a caller may retry a request whose worker died. OpenFHE is only used for validation,
rescaling and key switching; sums and ct × pt run on raw limbs (numpy, or CuPy on a GPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from ray import serve

from actors.fhe_autoscale import BACKLOG, POLICY, backlog_folds
from actors.fhe_compute import (
    BatchCompute,
    FoldRequest,
    FoldResult,
    ScoreRequest,
    fetched,
    with_lost,
)
from confide import b64
from confide.auth import Principal
from confide.config import Settings, settings_from_actor_config
from confide.errors import (
    ConfideError,
    Conflict,
    Forbidden,
    InvalidMessage,
    NotFound,
)
from confide.store import FheKeyRecord, open_store
from fhe.errors import FheError
from fhe.keys import KeyMeta, PublicBundle
from fhe.validator import ValidatorPool

log = logging.getLogger("confide.fhe")

#: A worker re-checks that a cached key is still registered at most this often.
KEY_RECHECK_S = 1.0

_T = TypeVar("_T")


def public_info(rec: FheKeyRecord) -> dict[str, Any]:
    """What `GET /api/fhe/keys/{key_id}` shows."""
    meta = KeyMeta.from_dict(rec.meta).public_info()
    return meta | {"owner": rec.owner, "created_at": rec.created_at}


class FheWorkerCore(BatchCompute):
    """What a worker replica does, without Serve (driven directly by unit tests)."""

    def __init__(self, settings: Settings) -> None:
        from fhe.kernels import get_backend

        self.settings = settings
        self.store = open_store(settings.store_url())
        self.kernels = get_backend(settings.fhe_backend)
        self._keys: OrderedDict[str, tuple[PublicBundle, KeyMeta, bytes]] = OrderedDict()
        self._checked: dict[str, float] = {}
        # OpenFHE keeps evaluation keys in process-wide maps: one thread does all FHE work.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fhe")
        self.validators = ValidatorPool(settings.fhe_validators,
                                        settings.fhe_validator_memory_mb,
                                        settings.fhe_validator_timeout_s)
        self.batches = 0
        self.batched_requests = 0
        self.inflight = 0

    async def _run(self, fn: Any, *args: Any) -> Any:
        self.inflight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.inflight -= 1

    # ------------------------------------------------------------ key registry

    def _register(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        """Validate (in a validator process: fhe/validator.py) and store a key bundle."""
        bundle = PublicBundle.from_json(body)
        existing = self.store.get_fhe_key(bundle.key_id)
        if existing is not None:
            if existing.owner != owner:
                raise Conflict("this key is registered by another user")
            return {"key_id": existing.key_id}
        meta = self.validators.validate(bundle, self.settings.fhe_min_security)
        record = FheKeyRecord(bundle.key_id, owner, meta.to_dict() | {
            "label": str(body.get("label", ""))[:128]}, bundle.blobs(), time.time())
        self.store.put_fhe_key(record)
        return {"key_id": bundle.key_id}

    async def register(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        """Off the FHE thread: OpenFHE never reads an unvalidated upload in this process."""
        try:
            result: dict[str, Any] = await asyncio.to_thread(self._register, owner, body)
        except FheError as e:
            raise InvalidMessage(str(e)) from None
        return result

    async def key_info(self, key_id: str) -> dict[str, Any]:
        rec = await asyncio.to_thread(self.store.get_fhe_key, key_id)
        if rec is None:
            raise NotFound("no such key")
        return public_info(rec)

    async def public_key(self, key_id: str) -> dict[str, Any]:
        """`GET /api/fhe/keys/{key_id}/public`: what a contributor needs to encrypt."""
        rec = await asyncio.to_thread(self.store.get_fhe_key, key_id)
        if rec is None:
            raise NotFound("no such key")
        return {"key_id": rec.key_id, "owner": rec.owner,
                "context": b64.encode(rec.blobs["context"]),
                "public_key": b64.encode(rec.blobs["public_key"])}

    async def delete_key(self, key_id: str, who: Principal) -> None:
        rec = await asyncio.to_thread(self.store.get_fhe_key, key_id)
        if rec is None:
            raise NotFound("no such key")
        if rec.owner != who.user:
            raise Forbidden("only the key's owner may delete it")
        await asyncio.to_thread(self.store.delete_fhe_key, key_id)
        self._keys.pop(key_id, None)

    def _key(self, key_id: str) -> tuple[PublicBundle, KeyMeta, bytes]:
        """The registered key's bundle, meta and output template (cached)."""
        from fhe import native

        cached = self._keys.get(key_id)
        if cached is not None:
            now = time.monotonic()
            if now - self._checked.get(key_id, 0.0) > KEY_RECHECK_S:
                # deletion reaches every replica: a cached key is re-checked each second
                if not self.store.fhe_key_exists(key_id):
                    self._keys.pop(key_id, None)
                    raise NotFound("no such key")
                self._checked[key_id] = now
            self._keys.move_to_end(key_id)
            return cached
        rec = self.store.get_fhe_key(key_id)
        if rec is None:
            raise NotFound("no such key")
        bundle = PublicBundle.from_json(
            {k: b64.encode(v) for k, v in rec.blobs.items()}
        )
        meta = KeyMeta.from_dict(rec.meta)
        entry = (bundle, meta, native.output_template(bundle))
        self._keys[key_id] = entry
        self._checked[key_id] = time.monotonic()
        while len(self._keys) > 8:
            self._keys.popitem(last=False)
        return entry

    # ---------------------------------------------------------------- compute

    def _score(self, req: ScoreRequest) -> bytes:
        from fhe.evaluator import score

        bundle, meta, _ = self._key(req.key_id)
        return score(req.ciphertext, req.weights, req.bias, bundle, meta, backend=self.kernels)

    def _mean(self, key_id: str, total: bytes, count: int) -> bytes | None:
        from fhe.evaluator import mean

        bundle, meta, _ = self._key(key_id)
        if meta.depth < 1:
            return None
        return mean(total, count, bundle, meta)

    async def fold_many(self, requests: list[FoldRequest]) -> list[FoldResult | ConfideError]:
        self.batches += 1
        self.batched_requests += len(requests)
        result: list[FoldResult | ConfideError] = await self._run(self._fold_batch, requests)
        return result

    async def score_many(self, requests: list[ScoreRequest]) -> list[bytes | ConfideError]:
        self.batches += 1
        self.batched_requests += len(requests)
        result: list[bytes | ConfideError] = await self._run(self._score_batch, requests)
        return result

    async def mean(self, key_id: str, total: bytes, count: int) -> bytes | None:
        result = await self._guard(self._mean, key_id, total, count)
        if isinstance(result, ConfideError):
            raise result
        return result  # type: ignore[no-any-return]

    async def _guard(self, fn: Any, *args: Any) -> Any:
        """Run one request; its own errors come back as values so a batch never fails."""
        try:
            return await self._run(fn, *args)
        except ConfideError as e:
            return e
        except FheError as e:
            return InvalidMessage(str(e))

    def stats(self) -> dict[str, Any]:
        return {
            "workers": 1,
            "queue_depth": self.inflight,
            "batches": self.batches,
            "batch_mean": self.batched_requests / self.batches if self.batches else None,
        }


@serve.deployment
class FheWorker:
    """The Serve deployment; options (autoscaling, batching, resources) come from
    `fhe_worker_options`, batch sizes from the settings."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings_from_actor_config(settings)
        self.core = FheWorkerCore(self.settings)
        self.fold.set_max_batch_size(self.settings.fhe_max_batch)  # type: ignore[attr-defined]
        self.fold.set_batch_wait_timeout_s(self.settings.fhe_batch_wait_s)  # type: ignore[attr-defined]
        self.score.set_max_batch_size(self.settings.fhe_max_batch)  # type: ignore[attr-defined]
        self.score.set_batch_wait_timeout_s(self.settings.fhe_batch_wait_s)  # type: ignore[attr-defined]
        self._reporter: asyncio.Task[None] | None = None
        self._queued = 0
        with contextlib.suppress(RuntimeError):  # no running loop here: start on first use
            asyncio.get_running_loop()
            self._start()

    async def check_health(self) -> None:
        """Serve's periodic health check: also (re)starts the figures reporter."""
        self._start()

    def _start(self) -> None:
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.create_task(self._report_loop())

    async def _report_loop(self) -> None:
        """Each second, this worker's figures go to the `system` analytics stream."""
        import uuid

        import ray

        from actors.routing import host_index, host_name

        source = f"fhe-{uuid.uuid4().hex[:8]}"
        index = host_index("stream:system", self.settings.hosts)
        while True:
            await asyncio.sleep(1.0)
            await self._read_backlog()
            try:
                host = ray.get_actor(host_name(index), namespace=self.settings.ray_namespace)
                host.stream_report.remote(source, "fhe", self.core.stats())
            except Exception:  # analytics must never disturb the worker
                log.debug("could not report worker figures", exc_info=True)

    async def _read_backlog(self) -> None:
        """The hosts' queued contributions, for `record_autoscaling_stats`."""
        import ray

        from actors.routing import host_name

        try:
            hosts = [ray.get_actor(host_name(k), namespace=self.settings.ray_namespace)
                     for k in range(self.settings.hosts)]
            stats = await asyncio.wait_for(
                asyncio.gather(*(h.stats.remote() for h in hosts)), 2.0)
            self._queued = sum(int(s.get("fhe_queued", 0)) for s in stats)
        except Exception:  # autoscaling input only; keep the last figure
            log.debug("could not read the hosts' backlog", exc_info=True)

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve custom autoscaling metric (actors/fhe_autoscale.py)."""
        self._start()
        return {BACKLOG: backlog_folds(self._queued, self.settings.fhe_shard_size)}

    async def register(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        self._start()
        return await self.core.register(owner, body)

    async def key_info(self, key_id: str) -> dict[str, Any]:
        return await self.core.key_info(key_id)

    async def public_key(self, key_id: str) -> dict[str, Any]:
        return await self.core.public_key(key_id)

    async def delete_key(self, key_id: str, who: Principal) -> None:
        await self.core.delete_key(key_id, who)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def fold(self, requests: list[FoldRequest]) -> list[FoldResult | ConfideError]:
        self._start()
        ready = await asyncio.gather(*(fetched(r) for r in requests))
        results = await self.core.fold_many([r for r, _ in ready])
        me = self._replica_id()
        merged = [with_lost(res, lost) for res, (_, lost) in zip(results, ready, strict=True)]
        return [replace(r, worker=me) if isinstance(r, FoldResult) else r for r in merged]

    def _replica_id(self) -> str:
        try:
            return str(serve.get_replica_context().replica_id.unique_id)
        except Exception:  # noqa: BLE001 - figures only
            return ""

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def score(self, requests: list[ScoreRequest]) -> list[bytes | ConfideError]:
        self._start()
        return await self.core.score_many(requests)

    async def mean(self, key_id: str, total: bytes, count: int) -> bytes | None:
        return await self.core.mean(key_id, total, count)


def fhe_worker_options(settings: Settings) -> dict[str, Any]:
    """Resources and autoscaling of the worker deployment (the target tracks batch size)."""
    actor: dict[str, Any] = {
        "num_cpus": settings.fhe_worker_cpus,
        "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(settings.fhe_omp_threads)}},
    }
    # Placement comes from the settings (or cluster/serve.yaml), never from detection:
    # `serve run`/`serve deploy` import the app before Ray is even connected.
    if settings.fhe_worker_gpus:
        actor["num_gpus"] = settings.fhe_worker_gpus
    if settings.fhe_worker_resources:
        actor["resources"] = dict(settings.fhe_worker_resources)
    return {
        "ray_actor_options": actor,
        "max_ongoing_requests": settings.fhe_max_batch * 2,
        "max_queued_requests": settings.fhe_max_queued,
        "autoscaling_config": {
            "min_replicas": settings.fhe_min_workers,
            "initial_replicas": settings.fhe_min_workers,
            "max_replicas": settings.fhe_max_workers,
            "target_ongoing_requests": settings.fhe_max_batch,
            "upscale_delay_s": settings.fhe_upscale_delay_s,
            "downscale_delay_s": settings.fhe_downscale_delay_s,
            "metrics_interval_s": 1.0,
            "policy": {"policy_function": POLICY},  # ongoing requests + the hosts' backlog
            "look_back_period_s": 2.0,
        },
    }
