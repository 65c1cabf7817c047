"""Shared fixtures of the core unit tests: a clean settings environment and principals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from confide.auth import Principal

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def principal() -> Callable[..., Principal]:
    def make(
        user: str = "alice",
        role: str = "client",
        sessions: tuple[str, ...] = ("s1",),
        expires_at: float = 1e12,
    ) -> Principal:
        return Principal(user, role, frozenset(sessions), expires_at)  # type: ignore[arg-type]

    return make
