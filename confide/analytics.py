"""Analytics streams (sans-I/O): who may watch what, and the live figures of each stream.

`system` merges the reports every gateway replica and host sends each second;
`session:<id>` is computed by the chat session itself (`SessionActivity`). Streams
publish at most once a second, and only when a figure changed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from confide.auth import Principal
from confide.errors import Forbidden, NotFound

#: A source that has not reported for this long is left out of the system figures.
STALE_S = 10.0
RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class StreamRef:
    """A stream a connection may subscribe to: its name, topic and routing key."""

    name: str
    kind: str  # "system" | "session" | "fhe"
    route: str  # the entity whose host serves it
    key_id: str | None = None

    @property
    def topic(self) -> str:
        suffix = f"#{self.key_id}" if self.key_id else ""
        return f"stream:{self.name}{suffix}"


def resolve(stream: str, who: Principal, key_id: str | None = None) -> StreamRef:
    """The stream `who` asks for, or `Forbidden` / `NotFound` (PROTOCOL.md, Analytics)."""
    if stream == "system":
        if who.role not in ("admin", "therapist"):
            raise Forbidden("the system stream is for admins and therapists")
        return StreamRef(stream, "system", "stream:system")
    kind, _, name = stream.partition(":")
    if kind == "session" and name:
        if not (who.role == "admin" or who.may_join(name)):
            raise Forbidden("not a member of this session")
        return StreamRef(stream, "session", f"chat:{name}")
    if kind == "fhe" and name:
        if not key_id:
            raise NotFound("an fhe stream needs a key_id")
        return StreamRef(stream, "fhe", f"stream:{stream}", key_id)
    raise NotFound("no such stream")


# ------------------------------------------------------------------- system


@dataclass
class _Report:
    kind: str  # "gateway" | "host"
    at: float
    data: dict[str, Any]
    rates: dict[str, float] = field(default_factory=dict)


#: Counters whose per-second rate the system stream shows.
RATE_COUNTERS = ("messages", "frames_in", "frames_out", "errors", "notifications")


class SystemStream:
    def __init__(self) -> None:
        self._reports: dict[str, _Report] = {}

    def report(self, source: str, kind: str, data: dict[str, Any], now: float) -> None:
        rates: dict[str, float] = {}
        prev = self._reports.get(source)
        if prev is not None and now > prev.at:
            dt = now - prev.at
            for name in RATE_COUNTERS:
                if name in data and name in prev.data:
                    rates[name] = max(0.0, (data[name] - prev.data[name]) / dt)
        self._reports[source] = _Report(kind, now, data, rates)

    def snapshot(self, now: float) -> dict[str, Any]:
        live = {s: r for s, r in self._reports.items() if now - r.at <= STALE_S}
        for s in [s for s in self._reports if s not in live]:
            del self._reports[s]
        gateways = [r for r in live.values() if r.kind == "gateway"]
        hosts = [r for r in live.values() if r.kind == "host"]
        workers = [r for r in live.values() if r.kind == "fhe"]
        connections: dict[str, int] = {}
        errors: dict[str, int] = {}
        closes: dict[str, int] = {}
        for g in gateways:
            _add(connections, g.data.get("connections", {}))
            _add(errors, g.data.get("errors_by_code", {}))
            _add(closes, g.data.get("closes_by_code", {}))
        acks = sum(g.data.get("ack_count", 0) for g in gateways)
        out: dict[str, Any] = {
            "gateways": len(gateways),
            "hosts": len(hosts),
            "connections": connections,
            "connections_total": sum(connections.values()),
            "connection_duration_s_mean": _weighted(gateways, "duration_mean", "duration_count"),
            "resume_attempts": sum(g.data.get("resumes", 0) for g in gateways),
            "resume_recovered": sum(g.data.get("resumes_recovered", 0) for g in gateways),
            "messages_per_s": _rate(gateways, "messages"),
            "frames_in_per_s": _rate(gateways, "frames_in"),
            "frames_out_per_s": _rate(gateways, "frames_out"),
            "message_bytes_mean": _weighted(gateways, "bytes_mean", "bytes_count"),
            "errors_per_s": _rate(gateways, "errors"),
            "errors_by_code": errors,
            "closes_by_code": closes,
            "ack_latency_ms": {
                q: _weighted(gateways, f"ack_{q}_ms", "ack_count") for q in ("p50", "p95", "p99")
            },
            "acks": acks,
            "processing_ms": {
                q: _weighted(hosts, f"proc_{q}_ms", "proc_count") for q in ("p50", "p99")
            },
            "sessions": sum(h.data.get("sessions", 0) for h in hosts),
            "memory_mb": {
                "gateways": round(sum(g.data.get("rss_mb", 0.0) for g in gateways), 1),
                "hosts": round(sum(h.data.get("rss_mb", 0.0) for h in hosts), 1),
            },
        }
        if workers:
            out["fhe"] = {
                "workers": sum(w.data.get("workers", 0) for w in workers),
                "queue_depth": sum(w.data.get("queue_depth", 0) for w in workers),
                "batch_size_mean": _weighted(workers, "batch_mean", "batches"),
                "batches": sum(w.data.get("batches", 0) for w in workers),
            }
        return out


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + int(v)


def _rate(reports: list[_Report], name: str) -> float:
    return round(sum(r.rates.get(name, 0.0) for r in reports), 3)


def _weighted(reports: list[_Report], value: str, weight: str) -> float | None:
    pairs = [(r.data.get(value), r.data.get(weight, 0)) for r in reports]
    pairs = [(v, w) for v, w in pairs if v is not None and w]
    total = sum(w for _, w in pairs)
    return round(sum(v * w for v, w in pairs) / total, 3) if total else None


# ------------------------------------------------------------------ session


@dataclass
class SessionActivity:
    """Per-session figures: message rate and mean response time between participants."""

    times: deque[float] = field(default_factory=deque)
    last_sender: str | None = None
    last_ts: float = 0.0
    responses: int = 0
    response_total_s: float = 0.0

    def message(self, sender: str, ts: float) -> None:
        self.times.append(ts)
        while self.times and self.times[0] < ts - RATE_WINDOW_S:
            self.times.popleft()
        if self.last_sender is not None and sender != self.last_sender:
            self.responses += 1
            self.response_total_s += max(0.0, ts - self.last_ts)
        self.last_sender, self.last_ts = sender, ts

    def figures(self, now: float, members: list[dict[str, str]]) -> dict[str, Any]:
        recent = sum(1 for t in self.times if t >= now - RATE_WINDOW_S)
        mean = self.response_total_s / self.responses if self.responses else None
        return {
            "online": len(members),
            "members": members,
            "messages_per_min": recent * 60.0 / RATE_WINDOW_S,
            "mean_response_s": round(mean, 3) if mean is not None else None,
        }


class Throttle:
    """At most one publication a second, and only when the figures changed."""

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self._interval = min_interval_s
        self._last_at = float("-inf")
        self._last: dict[str, Any] | None = None

    def due(self, figures: dict[str, Any], now: float) -> bool:
        if now - self._last_at < self._interval or figures == self._last:
            return False
        self._last_at, self._last = now, figures
        return True
