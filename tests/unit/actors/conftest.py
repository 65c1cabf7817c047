"""Fixtures of the host-actor unit tests: `Host` driven directly, no Ray, no servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.host import Host
from confide.config import Settings

from .support import Clock, Gate, GateFactory


@pytest.fixture
def settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(data_dir=tmp_path, jwt_secret="x" * 32, hosts=1, **overrides)

    return make


@pytest.fixture
def clock() -> Clock:
    """The hosts' clock (the event loop keeps real time); tests move it forward."""
    return Clock()


@pytest.fixture
async def make_host(
    settings: Callable[..., Settings], clock: Clock
) -> AsyncIterator[Callable[..., Host]]:
    """Hosts on the test's data dir (a second one is a restarted incarnation).

    No background loops: tests call `sweep`, `reap` and `tick` themselves, and Ray's
    metrics export stays out of unit tests.
    """
    made: list[Host] = []

    def make(**overrides: Any) -> Host:
        h = Host(settings(**overrides), 0, clock=clock, background=False)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.close()


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
