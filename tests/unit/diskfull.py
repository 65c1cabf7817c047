"""A full disk, made deterministically for the store's own connection.

`PRAGMA max_page_count` caps the database at its current size: the next write that needs
a page more fails with SQLITE_FULL, exactly as on a full disk; raising the cap again is
space returning. `file_size_limit` makes the process's writes past a size fail (EFBIG),
so that the failure comes from the file system during COMMIT itself.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from confide.store.sqlite import SqliteStore

UNLIMITED_PAGES = 1_073_741_823


def fill(store: SqliteStore) -> None:
    """The disk is full now: not one page more."""
    db = store._conn()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")


def free(store: SqliteStore) -> None:
    """Space came back."""
    store._conn().execute(f"PRAGMA max_page_count = {UNLIMITED_PAGES}")


@contextmanager
def file_size_limit(max_bytes: int) -> Iterator[None]:
    """Writes of this process past `max_bytes` into any file fail (EFBIG, no signal)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
