"""Audit trail operations of a host: record, batched writes, queries, retention.

Entity operations call `audit` (a list append, no store round trip); the buffer is written
in one transaction every `CONFIDE_AUDIT_FLUSH_S` (or at once when a batch is full), off
the path of chat messages. Gateways send theirs (refused authorizations, key access) in
batches through `audit_record`. A failed write keeps its events for the next one.
"""

from __future__ import annotations

import asyncio
import logging

from actors.host.base import HostBase
from confide.audit import AuditRecord
from confide.protocol import AuditEvent, AuditEvents, AuditQuery

log = logging.getLogger("confide.audit")

#: Seconds between two prunes of expired audit events (by host 0's sweeper).
PRUNE_EVERY_S = 3600.0


class AuditOps(HostBase):
    async def audit_record(self, records: list[AuditRecord]) -> list[None]:
        """Events recorded by a gateway replica (one batch of its connections' events)."""
        self.audit_buffer.extend(records)
        self._flush_when_full()
        return [None] * len(records)

    async def flush_audit(self) -> None:
        """Write every waiting event in one transaction (one flush at a time)."""
        async with self._audit_lock:
            self._audit_flushing = False
            records = self.audit_buffer.take()
            if not records:
                return
            try:
                await asyncio.to_thread(self.store.append_audit, records)
            except Exception as exc:  # noqa: BLE001 - kept for the next flush
                self.audit_buffer.put_back(records)
                log.warning("audit events not written yet (%s); %d waiting",
                            type(exc).__name__, len(self.audit_buffer))

    async def audit_query(self, query: AuditQuery) -> AuditEvents:
        """Stored events, newest first (this host's waiting ones are written first)."""
        await self.flush_audit()
        found = await asyncio.to_thread(
            self.store.query_audit, query.user, query.session, query.since, query.limit)
        return AuditEvents(events=[AuditEvent(**r.dump()) for r in found])  # type: ignore[arg-type]

    async def prune_audit(self) -> int:
        """Delete events older than the retention (none when it is 0: kept for good)."""
        days = self.settings.audit_retention_days
        if days <= 0:
            return 0
        before = self.clock.time() - days * 86400
        pruned: int = await asyncio.to_thread(self.store.prune_audit, before)
        if pruned:
            log.info("pruned %d audit events past their retention", pruned)
        return pruned

    def sweep(self) -> None:
        super().sweep()
        now = self.clock.monotonic()
        if self.index == 0 and now - self._audit_pruned >= PRUNE_EVERY_S:
            self._audit_pruned = now
            self.background(self._prune_quietly())

    async def _prune_quietly(self) -> None:
        try:
            await self.prune_audit()
        except Exception as exc:  # noqa: BLE001 - tried again at the next sweep
            log.warning("audit pruning failed (%s)", type(exc).__name__)
