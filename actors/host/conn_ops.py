"""Per-user connection counting on the host that owns `user:<id>` (PROTOCOL 1.1)."""

from __future__ import annotations

from actors.host.base import HostBase


class ConnOps(HostBase):
    async def conn_acquire(self, user: str, conn_id: str, limit: int) -> bool:
        """Whether `user` may open one more WebSocket (counted if so)."""
        return self.connections.acquire(user, conn_id, limit)

    async def conn_release(self, user: str, conn_id: str) -> None:
        self.connections.release(user, conn_id)
