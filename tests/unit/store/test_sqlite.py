"""SQLite-only behaviour of the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from confide.store.sqlite import SqliteStore


def test_wal_mode(tmp_path: Path) -> None:
    db_path = tmp_path / "sub" / "confide.db"
    store = SqliteStore(str(db_path))
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
        store.close()
