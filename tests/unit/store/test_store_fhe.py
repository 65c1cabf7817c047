"""The store's FHE additions, over both backends: contributions recorded with their
aggregate in one transaction, and nothing stored for a deleted key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from confide.store import Store, open_store
from confide.store.base import FheKeyRecord


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    s.put_fhe_key(FheKeyRecord("k1", "dr", {}, {"context": b"c"}, 1.0))
    yield s
    s.close()


def test_fold_records_the_aggregate_and_its_contributions(store: Store) -> None:
    assert store.fold_aggregate("fhe:a", "k1", 2, b"sum2", [("u1", "s1"), ("u2", "s1")])
    assert store.load_aggregate("fhe:a", "k1") == (2, b"sum2")
    asked = [("u1", "s1"), ("u2", "s1"), ("u1", "s2"), ("u3", "s1")]
    assert store.fhe_contributions_seen("fhe:a", asked) == {("u1", "s1"), ("u2", "s1")}
    assert store.fhe_contributions_seen("fhe:b", asked) == set()  # per stream
    assert store.fhe_contributions_seen("fhe:a", []) == set()
    assert store.fold_aggregate("fhe:a", "k1", 3, b"sum3", [("u1", "s1")])  # ignored twice
    assert store.load_aggregate("fhe:a", "k1") == (3, b"sum3")


def test_many_contributions_are_looked_up_at_once(store: Store) -> None:
    """More pairs than one statement takes (SQLite's chunks), and ids that need quoting."""
    counted = [(f"u{i % 7}", f"id '{i}\"") for i in range(0, 1500, 2)]
    assert store.fold_aggregate("fhe:a", "k1", len(counted), b"sum", counted)
    asked = [(f"u{i % 7}", f"id '{i}\"") for i in range(1500)]
    assert store.fhe_contributions_seen("fhe:a", asked) == set(counted)


def test_nothing_is_stored_for_a_deleted_key(store: Store) -> None:
    assert store.fold_aggregate("fhe:a", "k1", 1, b"sum", [("u1", "s1")])
    assert store.fhe_key_exists("k1") and not store.fhe_key_exists("k2")
    store.delete_fhe_key("k1")
    assert not store.fhe_key_exists("k1")
    assert store.load_aggregate("fhe:a", "k1") is None
    assert ("u1", "s1") not in store.fhe_contributions_seen("fhe:a", [("u1", "s1")])
    # a fold that was in flight when the key went: no resurrection
    assert not store.fold_aggregate("fhe:a", "k1", 2, b"late", [("u1", "s2")])
    assert store.load_aggregate("fhe:a", "k1") is None
    assert ("u1", "s2") not in store.fhe_contributions_seen("fhe:a", [("u1", "s2")])


def test_contributions_survive_a_reopen_and_are_per_key(store: Store, store_url: str) -> None:
    store.put_fhe_key(FheKeyRecord("k2", "dr", {}, {"context": b"c"}, 1.0))
    assert store.fold_aggregate("fhe:a", "k1", 1, b"one", [("u1", "s1")])
    assert store.fold_aggregate("fhe:a", "k2", 1, b"two", [("u1", "s9")])
    assert store.fold_aggregate("fhe:a", "k1", 1, b"none", [])  # a sum with no new ids
    again = open_store(store_url)
    try:
        assert ("u1", "s1") in again.fhe_contributions_seen("fhe:a", [("u1", "s1")])
        assert again.load_aggregate("fhe:a", "k1") == (1, b"none")
        again.delete_fhe_key("k1")  # only k1's contributions go
        assert ("u1", "s1") not in again.fhe_contributions_seen("fhe:a", [("u1", "s1")])
        assert ("u1", "s9") in again.fhe_contributions_seen("fhe:a", [("u1", "s9")])
        assert again.load_aggregate("fhe:a", "k2") == (1, b"two")
    finally:
        again.close()
