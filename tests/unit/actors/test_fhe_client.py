"""FheWorkers, the typed client of the worker deployment, against a scripted handle (the
unit's boundary: Serve): retries when a replica dies, load shedding as `overloaded`, a
batch's error values raised."""

from __future__ import annotations

from typing import Any

import pytest
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from actors.fhe_client import ATTEMPTS, FheWorkers
from actors.fhe_compute import FoldRequest, FoldResult
from confide.errors import Internal, NotFound, Overloaded

REQ = FoldRequest("k", None, (b"x",))


class Method:
    """`handle.<method>.remote(...)`: answers from a script, one item per call. Ray's
    errors are raised; anything else is returned (a batch returns its errors as values)."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> Any:
        self.calls.append(args)
        answer = self.script.pop(0)

        async def result() -> Any:
            if isinstance(answer, (RayActorError, BackPressureError)):
                raise answer
            return answer

        return result()


class Handle:
    def __init__(self, **methods: Method) -> None:
        for name, method in methods.items():
            setattr(self, name, method)


async def test_a_dead_replica_is_retried_and_the_answer_returned() -> None:
    fold = Method([RayActorError(), FoldResult(b"sum", (None,))])
    assert await FheWorkers(Handle(fold=fold)).fold(REQ) == FoldResult(b"sum", (None,))
    assert fold.calls == [(REQ,), (REQ,)]


async def test_replicas_dying_every_time_give_internal() -> None:
    fold = Method([RayActorError() for _ in range(ATTEMPTS)])
    with pytest.raises(Internal):
        await FheWorkers(Handle(fold=fold)).fold(REQ)
    assert len(fold.calls) == ATTEMPTS


async def test_load_shedding_is_overloaded_at_once() -> None:
    score = Method([BackPressureError(num_queued_requests=9, max_queued_requests=8)])
    with pytest.raises(Overloaded) as err:
        await FheWorkers(Handle(score=score)).score(object())  # type: ignore[arg-type]
    assert err.value.code.value == "overloaded" and len(score.calls) == 1


async def test_an_error_returned_by_a_batch_is_raised() -> None:
    key_info = Method([NotFound("no such key")])
    with pytest.raises(NotFound):
        await FheWorkers(Handle(key_info=key_info)).key_info("k")
    mean = Method([None])
    assert await FheWorkers(Handle(mean=mean)).mean("k", b"t", 2) is None
    assert mean.calls == [("k", b"t", 2)]
