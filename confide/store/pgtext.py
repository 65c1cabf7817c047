"""Text that PostgreSQL can hold: any Python string, U+0000 included.

PostgreSQL's text type refuses U+0000, which SQLite stores (and a client may put one in a
message id). The store's connections dump every string parameter through `encode` and load
every text value through `decode`: a string with no U+0000 that does not start with U+0001
is stored as it is (all ordinary data), any other one is stored as U+0001 followed by the
string with U+0001 doubled and U+0000 written as U+0001 "0". The mapping is one to one, so
equality and unique constraints behave as in SQLite.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.string import StrDumperUnknown, TextLoader

_MARK = "\x01"


def encode(s: str) -> str:
    if "\x00" not in s and not s.startswith(_MARK):
        return s
    return _MARK + s.replace(_MARK, _MARK + _MARK).replace("\x00", _MARK + "0")


def decode(s: str) -> str:
    if not s.startswith(_MARK):
        return s
    out = []
    i = 1
    while i < len(s):
        c = s[i]
        if c == _MARK and i + 1 < len(s):
            out.append("\x00" if s[i + 1] == "0" else _MARK)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _Dumper(StrDumperUnknown):
    def dump(self, obj: str) -> Any:
        return super().dump(encode(obj))


class _Loader(TextLoader):
    def load(self, data: Any) -> Any:
        value = super().load(data)
        return decode(value) if isinstance(value, str) else value


def configure(conn: psycopg.Connection[Any]) -> None:
    """Install the mapping on one connection (the pool's `configure`)."""
    conn.adapters.register_dumper(str, _Dumper)
    conn.adapters.register_loader("text", _Loader)
