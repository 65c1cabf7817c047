"""Errors leaving a host actor: the core's own cross as they are, anything else (a store
that fails, e.g. on a full disk) as `internal`, with no detail."""

from __future__ import annotations

import sqlite3

import pytest

from actors.host.actor import _logged
from confide.errors import CloseCode, CloseConnection, Forbidden, Internal


async def test_unexpected_errors_cross_as_internal_without_detail() -> None:
    @_logged
    async def failing() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(Internal) as caught:
        await failing()
    assert caught.value.message == "internal error"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_the_core_errors_cross_as_they_are() -> None:
    @_logged
    async def forbidden() -> None:
        raise Forbidden("no")

    @_logged
    async def closing() -> None:
        raise CloseConnection(CloseCode.SESSION_ENDED)

    with pytest.raises(Forbidden):
        await forbidden()
    with pytest.raises(CloseConnection):
        await closing()
