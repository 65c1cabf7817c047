"""Analytics operations of a host: subscriptions, reports, figures, encrypted submits."""

from __future__ import annotations

from typing import Any

from ray.util import metrics as ray_metrics

from actors.blobs import Blob
from actors.host.base import HostBase, Watched
from actors.routing import host_index
from confide.analytics import StreamRef, Throttle
from confide.auth import Principal
from confide.errors import NotFound
from confide.events import Event
from confide.metrics import rss_mb
from confide.protocol import Metrics

#: Host figures exported to Prometheus (through `ray.util.metrics`).
GAUGES = (("sessions", "Chat sessions in memory"),
          ("inbox_users", "Users with an open inbox connection"),
          ("committed", "Chat messages committed since start"),
          ("proc_p99_ms", "Message processing time p99 (ms)"),
          ("rss_mb", "Resident memory (MiB)"))


class StreamOps(HostBase):
    _gauges: dict[str, Any] | None = None

    async def stream_subscribe(
        self, ref: StreamRef, conn_id: str, who: Principal
    ) -> dict[str, Any] | None:
        """Count a subscriber; the stream's snapshot (`metrics`, or the latest `aggregate`
        of an `fhe:` stream, None before its first contribution)."""
        if ref.kind == "fhe":
            await self.fhe.check_owner(ref, who)
        figures = None if ref.kind == "fhe" else await self._figures(ref)
        watched = self._streams.get(ref.topic)
        if watched is None:
            watched = self._streams[ref.topic] = Watched(ref, set(), Throttle())
            if figures is not None:
                watched.throttle.due(figures, self.clock.time())  # the snapshot counts as sent
        watched.conns.add(conn_id)
        if figures is None:
            return await self.fhe.frame(ref)
        return Metrics(stream=ref.name, ts=self.clock.time(), data=figures).dump()

    async def stream_unsubscribe(self, ref: StreamRef, conn_id: str) -> None:
        watched = self._streams.get(ref.topic)
        if watched is not None:
            watched.conns.discard(conn_id)
            if not watched.conns:
                del self._streams[ref.topic]

    async def stream_report(self, source: str, kind: str, data: dict[str, Any]) -> None:
        self.system.report(source, kind, data, self.clock.time())

    async def fhe_submit(self, ref: StreamRef, blob: Blob, user: str | None = None,
                         submit_id: str | None = None) -> None:
        await self.fhe.submit(ref, blob, user, submit_id)

    async def fhe_key_deleted(self, key_id: str) -> None:
        self.fhe.forget_key(key_id)

    async def _figures(self, ref: StreamRef) -> dict[str, Any]:
        now = self.clock.time()
        if ref.kind == "system":
            return self.system.snapshot(now)
        if ref.kind == "session":
            session = await self.session(ref.route.removeprefix("chat:"), create=False)
            return session.figures(now)
        raise NotFound("no such stream")

    def host_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sessions": len(self._sessions),
            "inbox_users": len(self._inboxes),
            "committed": self.committer.committed,
            "proc_count": self._proc.count,
            "rss_mb": rss_mb(),
        }
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            v = self._proc.quantile(q)
            out[f"proc_{name}_ms"] = v * 1000 if v is not None else None
        return out

    def export(self, stats: dict[str, Any]) -> None:
        """Host figures for Prometheus, cluster-wide through `ray.util.metrics`."""
        if self._gauges is None:
            self._gauges = {name: ray_metrics.Gauge(f"confide_host_{name}", doc,
                                                    tag_keys=("host",))
                            for name, doc in GAUGES}
        for name, gauge in self._gauges.items():
            if stats.get(name) is not None:
                gauge.set(float(stats[name]), tags={"host": str(self.index)})

    async def tick(self) -> None:
        stats = self.host_stats()
        if self._background_loops:  # Ray's metrics export stays out of unit tests
            self.export(stats)
        peer = self.peer(host_index("stream:system", self.settings.hosts))
        if peer is None:
            self.system.report(f"host-{self.index}", "host", stats, self.clock.time())
        else:
            peer.stream_report.remote(f"host-{self.index}", "host", stats)
        now = self.clock.time()
        fhe_topics = {t for t, w in self._streams.items() if w.ref.kind == "fhe"}
        if fhe_topics:
            await self.fhe.publish_due(fhe_topics, now)
        for topic, watched in list(self._streams.items()):
            if topic in fhe_topics:
                continue
            figures = await self._figures(watched.ref)
            if watched.throttle.due(figures, now):
                frame = Metrics(stream=watched.ref.name, ts=now, data=figures).dump()
                self.publish(Event(topic, frame))

    async def stats(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "incarnation": self.incarnation,
            "sessions": len(self._sessions),
            "connections": sum(s.connection_count for s in self._sessions.values()),
            "events": self.log.head,
            "commit_batches": self.committer.batches,
            "committed": self.committer.committed,
            "fhe_queued_bytes": self.fhe.queued_bytes,
            "fhe_queued": self.fhe.queued_count,
            "fhe_tree_workers": self.fhe.tree_workers,
        }
