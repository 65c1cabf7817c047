"""What an FHE worker computes for a `@serve.batch` batch: per key, one vectorized limb
operation over every request (sums: fhe.ops.aggregate_many; ct x pt:
fhe.ops.multiply_plain_many), then per-request OpenFHE steps; a request that breaks the
vectorized step is redone alone, so one bad request fails only itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from actors.blobs import Blob, fetch
from confide.errors import ConfideError, Internal, InvalidMessage
from fhe.errors import FheError
from fhe.keys import KeyMeta, PublicBundle

log = logging.getLogger("confide.fhe")


#: Why a contribution whose bytes could not be fetched was not added (a host answers
#: its submit `internal`: retry).
LOST = "the contribution was lost in transit; submit it again"


@dataclass(frozen=True)
class FoldRequest:
    """Add `contributions` to `total` (None: start from the first valid one): bytes, or
    blobs in Ray's object store (actors/blobs.py) that the worker fetches."""

    key_id: str
    total: bytes | None
    contributions: tuple[bytes | Blob, ...]


@dataclass(frozen=True)
class FoldResult:
    total: bytes | None
    #: Per contribution: None when added, else the reason it was refused.
    refused: tuple[str | None, ...]
    #: The worker replica that computed it (figures only).
    worker: str = ""


@dataclass(frozen=True)
class ScoreRequest:
    key_id: str
    ciphertext: bytes
    weights: tuple[float, ...]
    bias: float


async def fetched(req: FoldRequest) -> tuple[FoldRequest, list[int]]:
    """The request with its blobs' bytes, and the positions of those that were lost
    (left out of the request; `with_lost` puts them back in its result)."""
    data = await fetch(req.contributions)
    lost = [i for i, d in enumerate(data) if d is None]
    return FoldRequest(req.key_id, req.total, tuple(d for d in data if d is not None)), lost


def with_lost(result: FoldResult | ConfideError, lost: list[int]) -> FoldResult | ConfideError:
    """A fetched request's result, refusing the lost contributions at their positions."""
    if not lost or not isinstance(result, FoldResult):
        return result
    refused = list(result.refused)
    for i in lost:
        refused.insert(i, LOST)
    return FoldResult(result.total, tuple(refused), result.worker)


def as_error(exc: BaseException) -> ConfideError:
    """A request's own failure as the value its caller gets (never its text for others)."""
    if isinstance(exc, ConfideError):
        return exc
    if isinstance(exc, FheError):
        return InvalidMessage(str(exc))
    if isinstance(exc, ValueError):
        return InvalidMessage("the request does not fit the key (weights, shape or count)")
    log.error("an FHE request failed: %s", type(exc).__name__)
    return Internal("encrypted computation failed")



class BatchCompute:
    """Mixed into FheWorkerCore: needs `_key(key_id)`, `kernels` and `_score(req)`."""

    kernels: Any

    def _key(self, key_id: str) -> tuple[PublicBundle, KeyMeta, bytes]:
        raise NotImplementedError

    def _score(self, req: ScoreRequest) -> bytes:
        raise NotImplementedError

    def _fold(self, req: FoldRequest) -> FoldResult:
        """One request alone (the batch path's fallback)."""
        result = self._fold_batch([req])[0]
        if isinstance(result, ConfideError):
            raise result
        return result

    def _prepare(self, req: FoldRequest, meta: KeyMeta) -> tuple[list[bytes], list[str | None]]:
        """The parts to sum (running total first) and, per contribution, why it was refused."""
        from fhe.ops import check_submission

        valid: list[bytes] = []
        refused: list[str | None] = []
        for ct in req.contributions:
            assert isinstance(ct, bytes), "blobs are fetched before the batch runs"
            try:
                check_submission(ct, meta)
            except FheError as e:
                refused.append(str(e))
                continue
            valid.append(ct)
            refused.append(None)
        return ([req.total] if req.total is not None and valid else []) + valid, refused

    def _sum_one(self, parts: list[bytes], key_id: str) -> bytes:
        from fhe.evaluator import add
        from fhe.ops import aggregate

        bundle, meta, template = self._key(key_id)
        if meta.limb_add:  # proven byte-identical to OpenFHE's EvalAdd for this key
            return aggregate(parts, backend=self.kernels, template=template)
        return add(parts, bundle, meta)

    def _fold_batch(self, requests: list[FoldRequest]) -> list[FoldResult | ConfideError]:
        """Every request of a batch: per key, one vectorized limb sum over all requests
        (fhe.ops.aggregate_many); a request that breaks it is redone alone, so its error
        is its own and the others still get their sums."""
        from fhe.ops import aggregate_many

        results: list[FoldResult | ConfideError | None] = [None] * len(requests)
        groups: dict[str, list[tuple[int, list[bytes], list[str | None]]]] = {}
        for i, req in enumerate(requests):
            try:
                _, meta, _ = self._key(req.key_id)
                parts, refused = self._prepare(req, meta)
            except Exception as exc:  # noqa: BLE001 - isolated: this request only
                results[i] = as_error(exc)
                continue
            if not parts:
                results[i] = FoldResult(req.total, tuple(refused))
            else:
                groups.setdefault(req.key_id, []).append((i, parts, refused))
        for key_id, items in groups.items():
            _, meta, template = self._key(key_id)
            totals: list[bytes] | None = None
            if meta.limb_add and len(items) > 1:
                try:
                    totals = aggregate_many([p for _, p, _ in items], backend=self.kernels,
                                            template=template)
                except Exception:  # noqa: BLE001 - find the culprit request by request
                    totals = None
            for n, (i, parts, refused) in enumerate(items):
                try:
                    total = totals[n] if totals is not None else self._sum_one(parts, key_id)
                    results[i] = FoldResult(total, tuple(refused))
                except Exception as exc:  # noqa: BLE001 - isolated: this request only
                    results[i] = as_error(exc)
        return [r if r is not None else Internal("not processed") for r in results]

    def _score_batch(self, requests: list[ScoreRequest]) -> list[bytes | ConfideError]:
        """Per key, one vectorized ct x pt over every request (fhe.ops.multiply_plain_many),
        then each request's OpenFHE Rescale and rotations; errors stay per request."""
        from fhe.evaluator import finish_score
        from fhe.ops import check_submission, multiply_plain_many

        results: list[bytes | ConfideError | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            try:
                _, meta, _ = self._key(req.key_id)
                if meta.limb_mult:
                    check_submission(req.ciphertext, meta)
                    groups.setdefault(req.key_id, []).append(i)
                else:
                    results[i] = self._score(req)
            except Exception as exc:  # noqa: BLE001 - isolated: this request only
                results[i] = as_error(exc)
        for key_id, idx in groups.items():
            bundle, meta, template = self._key(key_id)
            products: list[bytes] | None = None
            if len(idx) > 1:
                try:
                    products = multiply_plain_many(
                        [requests[i].ciphertext for i in idx],
                        [requests[i].weights for i in idx], backend=self.kernels,
                        template=template)
                except Exception:  # noqa: BLE001 - redo request by request below
                    products = None
            for n, i in enumerate(idx):
                try:
                    req = requests[i]
                    results[i] = (finish_score(products[n], req.bias, bundle, meta)
                                  if products is not None else self._score(req))
                except Exception as exc:  # noqa: BLE001 - isolated: this request only
                    results[i] = as_error(exc)
        return [r if r is not None else Internal("not processed") for r in results]
