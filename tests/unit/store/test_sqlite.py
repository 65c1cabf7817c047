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


def test_old_poisoned_rows_are_read_as_valid_json(tmp_path: Path) -> None:
    """Rows written before strict parsing may hold Infinity/NaN: read back as null."""
    from tests.unit.store.test_store import message, new_session, notification

    db_path = tmp_path / "confide.db"
    store = SqliteStore(str(db_path))
    try:
        new_session(store)
        store.append_messages([message(1)], retention=100)
        store.insert_notification(notification("n1", 1.0))
        raw = sqlite3.connect(db_path)
        with raw:
            raw.execute("UPDATE messages SET body = ? WHERE session_id = 's1'",
                        ('{"v":Infinity,"w":[NaN,-Infinity],"t":"ok"}',))
            raw.execute("UPDATE notifications SET data = ? WHERE id = 'n1'", ('{"x":NaN}',))
        raw.close()
        (got,) = store.messages_after("s1", 0, 1, 100)
        assert got.body == {"v": None, "w": [None, None], "t": "ok"}
        assert store.messages_before("s1", 2, 10)[0].body == got.body
        rec = store.get_notification("n1")
        assert rec is not None and rec.data == {"x": None}
    finally:
        store.close()
