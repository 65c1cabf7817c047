"""The PostgreSQL store's text mapping: one to one, NUL-free, and ordinary text unchanged."""

from __future__ import annotations

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from confide.store.base import SessionRecord
from confide.store.pgtext import decode, encode
from confide.store.postgres import PostgresStore

# strings rich in the two characters that matter
odd_text = st.text(alphabet=st.sampled_from(["\x00", "\x01", "0", "a", "\\", "é"]), max_size=12)


@given(st.one_of(st.text(), odd_text))
def test_round_trip_and_no_nul(s: str) -> None:
    assert decode(encode(s)) == s
    assert "\x00" not in encode(s)


@given(odd_text, odd_text)
def test_one_to_one(a: str, b: str) -> None:
    assert (encode(a) == encode(b)) == (a == b)


def test_ordinary_text_is_stored_as_is(pg_schema_url: str) -> None:
    assert encode("plain \\ text, é, {\"json\": 1}") == "plain \\ text, é, {\"json\": 1}"
    store = PostgresStore(pg_schema_url)
    try:
        store.create_session(SessionRecord("plain-é\\", "ep", 1.0))
        store.create_session(SessionRecord("nul\x00", "ep", 1.0))
    finally:
        store.close()
    with psycopg.connect(pg_schema_url) as conn:
        rows = conn.execute("SELECT session_id FROM sessions ORDER BY session_id").fetchall()
    assert [r[0] for r in rows] == ["\x01nul\x010", "plain-é\\"]
