"""Fixtures of the host-actor unit tests: `Host` driven directly, no Ray, no servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import actors.host as host_module
from actors.host import Host
from confide.config import Settings

from .support import Clock, Gate, GateFactory


@pytest.fixture
def settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(data_dir=tmp_path, jwt_secret="x" * 32, hosts=1, **overrides)

    return make


@pytest.fixture
async def make_host(settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Host]]:
    """Hosts on the test's data dir (a second one is a restarted incarnation)."""
    made: list[Host] = []

    def make(**overrides: Any) -> Host:
        h = Host(settings(**overrides), 0)
        # The sweeper and the analytics ticker run on timers; tests call `_reap` and
        # `_tick` themselves, and Ray's metrics export stays out of unit tests.
        h._start_sweeper = lambda: None  # type: ignore[method-assign]
        h._export = lambda stats: None  # type: ignore[method-assign]
        made.append(h)
        return h

    yield make
    for h in made:
        tasks = [*h._tasks, *([h.committer._task] if h.committer._task else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        h.store.close()


@pytest.fixture
async def host(make_host: Callable[..., Host]) -> Host:
    return make_host()


@pytest.fixture
def gate() -> Iterator[GateFactory]:
    """Gates on store methods; all are opened at teardown so no thread stays blocked."""
    gates: list[Gate] = []

    def make(target: Any, name: str, **kwargs: Any) -> Gate:
        g = Gate(target, name, **kwargs)
        gates.append(g)
        return g

    yield make
    for g in gates:
        g.open()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The host's clock (only `actors.host`'s: the event loop keeps real time)."""
    c = Clock()
    monkeypatch.setattr(host_module, "time", c)
    return c
