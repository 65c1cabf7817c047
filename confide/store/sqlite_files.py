"""The SQLite file's owner-only modes, and the opening steps that must tolerate a store
opening the same file at the same moment."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from pathlib import Path

log = logging.getLogger("confide.store")

#: Owner-only modes of the database's directory and files (-wal and -shm included).
DIR_MODE = 0o700
FILE_MODE = 0o600
#: How long a statement waits for another connection's lock.
BUSY_TIMEOUT_S = 10.0


def secure_directory(path: Path) -> None:
    """Create `path` owner-only (0700), or tighten it to 0700 when it is ours.

    A directory of another user, or a shared sticky one (`/tmp`), is left as it is.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=DIR_MODE, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.getuid() and not st.st_mode & stat.S_ISVTX:
        os.chmod(path, DIR_MODE)


def secure_files(path: str) -> None:
    """The database and its -wal and -shm files: owner read/write only (0600). A file of
    another user is left as it is (with a warning)."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            os.chmod(name, FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("cannot make a database file owner-only (not its owner)")


def switch_to_wal(db: sqlite3.Connection) -> None:
    """WAL mode (once per file; a no-op after). The switch needs the file to itself, and
    SQLite answers "database is locked" at once, without its busy wait, while a store
    opening at the same moment holds a lock: retried for up to `BUSY_TIMEOUT_S`."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
