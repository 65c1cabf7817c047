"""The store's FHE additions: contributions recorded with their aggregate in one
transaction, and nothing stored for a deleted key (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from confide.store.base import FheKeyRecord
from confide.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "confide.db"))
    s.put_fhe_key(FheKeyRecord("k1", "dr", {}, {"context": b"c"}, 1.0))
    yield s
    s.close()


def test_fold_records_the_aggregate_and_its_contributions(store: SqliteStore) -> None:
    assert store.fold_aggregate("fhe:a", "k1", 2, b"sum2", [("u1", "s1"), ("u2", "s1")])
    assert store.load_aggregate("fhe:a", "k1") == (2, b"sum2")
    assert store.fhe_contribution_seen("fhe:a", "u1", "s1")
    assert store.fhe_contribution_seen("fhe:a", "u2", "s1")
    assert not store.fhe_contribution_seen("fhe:a", "u1", "s2")
    assert not store.fhe_contribution_seen("fhe:b", "u1", "s1")  # per stream
    assert store.fold_aggregate("fhe:a", "k1", 3, b"sum3", [("u1", "s1")])  # ignored twice
    assert store.load_aggregate("fhe:a", "k1") == (3, b"sum3")


def test_nothing_is_stored_for_a_deleted_key(store: SqliteStore) -> None:
    assert store.fold_aggregate("fhe:a", "k1", 1, b"sum", [("u1", "s1")])
    assert store.fhe_key_exists("k1") and not store.fhe_key_exists("k2")
    store.delete_fhe_key("k1")
    assert not store.fhe_key_exists("k1")
    assert store.load_aggregate("fhe:a", "k1") is None
    assert not store.fhe_contribution_seen("fhe:a", "u1", "s1")
    # a fold that was in flight when the key went: no resurrection
    assert not store.fold_aggregate("fhe:a", "k1", 2, b"late", [("u1", "s2")])
    assert store.load_aggregate("fhe:a", "k1") is None
    assert not store.fhe_contribution_seen("fhe:a", "u1", "s2")
