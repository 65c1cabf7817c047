"""A throwaway PostgreSQL server for the tests (scripts/postgres.sh), and clean schemas on it.

`CONFIDE_TEST_POSTGRES_URL` names a server to use instead (`.ci/run` starts one); without it
the first test that needs PostgreSQL starts one in a temp dir on a free loopback port, and it
stops at the end of the session. Each test gets a schema of its own on it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "postgres.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A server this test session started, and so may stop and start again."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="confide-pg-"))
        self.root.chmod(0o755)  # the server's own user (under root) must reach its data
        self.datadir = self.root / "data"
        self.port = free_port()
        self.url = ""

    def start(self) -> str:
        out = subprocess.run(
            [str(SCRIPT), "start", str(self.datadir), str(self.port)],
            capture_output=True, text=True, timeout=300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"scripts/postgres.sh start failed: {out.stderr.strip()}")
        self.url = out.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.datadir)], check=True, timeout=120)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def with_search_path(url: str, schema: str) -> str:
    """`url` whose connections use `schema` (libpq's `options`)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A URL on a new, empty schema of `url`'s database; the schema goes afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]
