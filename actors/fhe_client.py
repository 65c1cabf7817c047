"""`FheWorkers`: the typed client of the FHE worker deployment (actors/fhe_worker.py),
used by the gateway's REST routes and by hosts.

Everything a worker computes is pure, so a request whose replica died is retried on
another; Serve's load shedding (`max_queued_requests`) becomes `Overloaded`; an error a
batch returns as a value is raised here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors.fhe_compute import FoldRequest, FoldResult, ScoreRequest
from confide.auth import Principal
from confide.errors import ConfideError, Internal, Overloaded

log = logging.getLogger("confide.fhe")

#: Tries of one request (a replica may die under it).
ATTEMPTS = 3


class FheWorkers:
    def __init__(self, handle: Any) -> None:
        #: The deployment's `DeploymentHandle`.
        self.handle = handle

    @classmethod
    def of_app(cls, app_name: str) -> FheWorkers:
        from ray import serve

        return cls(serve.get_deployment_handle("FheWorker", app_name))

    async def fold(self, req: FoldRequest) -> FoldResult:
        result: FoldResult = await self._call("fold", lambda h: h.fold.remote(req))
        return result

    async def score(self, req: ScoreRequest) -> bytes:
        result: bytes = await self._call("score", lambda h: h.score.remote(req))
        return result

    async def mean(self, key_id: str, total: bytes, count: int) -> bytes | None:
        result: bytes | None = await self._call(
            "mean", lambda h: h.mean.remote(key_id, total, count))
        return result

    async def register(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "register", lambda h: h.register.remote(owner, body))
        return result

    async def key_info(self, key_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "key_info", lambda h: h.key_info.remote(key_id))
        return result

    async def public_key(self, key_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "public_key", lambda h: h.public_key.remote(key_id))
        return result

    async def delete_key(self, key_id: str, who: Principal) -> None:
        await self._call("delete_key", lambda h: h.delete_key.remote(key_id, who))

    async def _call(self, what: str, send: Callable[[Any], Any]) -> Any:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError

        for attempt in range(ATTEMPTS):
            try:
                result = await send(self.handle)
            except BackPressureError:
                raise Overloaded("encrypted computation is overloaded; retry later") from None
            except RayActorError:
                if attempt == ATTEMPTS - 1:
                    raise Internal("encrypted computation failed") from None
                log.warning("an FHE worker died during %s; retrying", what)
                continue
            if isinstance(result, ConfideError):
                raise result
            return result
        raise Internal("encrypted computation failed")
