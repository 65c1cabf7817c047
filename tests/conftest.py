"""Fixtures of every test: a PostgreSQL server, started only when a test asks for one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.pgserver import PgServer, fresh_schema

#: Read at import: the unit tests' autouse fixture clears CONFIDE_* variables.
EXTERNAL_POSTGRES_URL = os.environ.get("CONFIDE_TEST_POSTGRES_URL", "")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A server of this session's own (tests that restart PostgreSQL need one)."""
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    """CONFIDE_TEST_POSTGRES_URL, else the URL of this session's own server."""
    if EXTERNAL_POSTGRES_URL:
        return EXTERNAL_POSTGRES_URL
    server: PgServer = request.getfixturevalue("pg_server")
    return server.url


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose tables live in a new, empty schema of their own."""
    with fresh_schema(postgres_url) as url:
        yield url
