"""The PostgreSQL store's connections: a psycopg pool and retries across outages.

Connections are in autocommit mode; a write runs in one explicit transaction. When the
server goes away (a restart, a failover, a dropped connection), an operation is retried on a
fresh connection until `retry_s` has passed. The pool checks each connection as it lends it
and replaces broken ones, and a retry asks the pool to re-check the idle ones.

A write that fails while committing may or may not have committed: its retry is told so
(`retry=True`) and must find out before it writes again (see PostgresStore).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from confide.store.migrations import migrate_postgres

log = logging.getLogger(__name__)

T = TypeVar("T")

Conn = psycopg.Connection[dict[str, Any]]


class PgPool:
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        retry_s: float = 30.0,
        open_timeout_s: float = 30.0,
    ) -> None:
        self.retry_s = retry_s
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5},
            # a borrower waits this long for a connection; `run` retries past it
            timeout=min(5.0, retry_s),
            name="confide-store",
        )
        try:
            self._pool.open(wait=True, timeout=open_timeout_s)
            self.run(migrate_postgres, write=False)
        except BaseException:
            self._pool.close()
            raise

    def run(self, work: Callable[..., T], *, write: bool = True) -> T:
        """`work(conn)` — in one transaction when `write` — retried while the server is
        unreachable. A write's work is called as `work(conn, retry)`, `retry` being True when
        an earlier attempt may have committed."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.05
        retry = False
        while True:
            try:
                with self._pool.connection() as conn:
                    if not write:
                        return work(conn)
                    with conn.transaction():
                        return work(conn, retry)
            except psycopg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("store: %s; retrying", type(exc).__name__)
                retry = True
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        self._pool.close()
