"""Fixtures of the store suite: every test that takes `store` runs over both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from confide.store import Store, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'confide.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()
