"""Open WebSockets per user, counted on the host that owns the user (sans-I/O).

PROTOCOL 1.1, "Connections per user": at most `CONFIDE_MAX_CONNECTIONS_PER_USER` open
WebSockets per user across the cluster. Every gateway replica asks the host of
`user:<id>` before it serves a connection and tells it when the connection ends.
Connection ids start with the gateway replica's id, so the connections of a replica that
died (and never said goodbye) are dropped with it when its lease runs out.
"""

from __future__ import annotations


class ConnectionCounts:
    def __init__(self) -> None:
        self._open: dict[str, set[str]] = {}

    def acquire(self, user: str, conn_id: str, limit: int) -> bool:
        """Count `conn_id` for `user`, unless the user already has `limit` open."""
        conns = self._open.setdefault(user, set())
        if conn_id in conns:
            return True  # a retried call
        if len(conns) >= limit:
            if not conns:
                del self._open[user]
            return False
        conns.add(conn_id)
        return True

    def release(self, user: str, conn_id: str) -> None:
        conns = self._open.get(user)
        if conns is not None:
            conns.discard(conn_id)
            if not conns:
                del self._open[user]

    def drop_prefix(self, prefix: str) -> int:
        """Forget the connections whose id starts with `prefix` (a dead gateway replica)."""
        dropped = 0
        for user in list(self._open):
            conns = self._open[user]
            gone = {c for c in conns if c.startswith(prefix)}
            dropped += len(gone)
            conns -= gone
            if not conns:
                del self._open[user]
        return dropped

    def count(self, user: str) -> int:
        return len(self._open.get(user, ()))

    @property
    def users(self) -> int:
        return len(self._open)
