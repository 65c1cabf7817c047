"""Operational metrics of a gateway replica: Prometheus metrics named `confide_*`, and a
snapshot of the same figures for the `system` analytics stream."""

from __future__ import annotations

import os
import resource
import sys
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
DURATION_BUCKETS = (1, 5, 30, 60, 300, 900, 1800, 3600, 7200, 14400)
WINDOW = 2048


class Window:
    """The last `WINDOW` samples, for quantiles in the analytics stream."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=WINDOW)
        self.count = 0

    def add(self, value: float) -> None:
        self._samples.append(value)
        self.count += 1

    def quantile(self, q: float) -> float | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


class GatewayStats:
    """What one replica counts; `/metrics` renders it, `snapshot()` feeds `system`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._connections = Gauge(
            "confide_connections", "Open WebSocket connections", ["endpoint"], registry=r
        )
        self._opened = Counter(
            "confide_connections_opened", "WebSocket connections opened", ["endpoint"],
            registry=r,
        )
        self._duration = Histogram(
            "confide_connection_duration_seconds", "How long connections lasted", ["endpoint"],
            buckets=DURATION_BUCKETS, registry=r,
        )
        self._closes = Counter(
            "confide_closes", "Connections closed by the server, by close code", ["code"],
            registry=r,
        )
        self._resumes = Counter(
            "confide_resume_attempts", "Reconnections with resume, by outcome", ["recovered"],
            registry=r,
        )
        self._frames_in = Counter(
            "confide_frames_received", "Frames received", ["endpoint"], registry=r
        )
        self._frames_out = Counter(
            "confide_frames_sent", "Frames sent", ["endpoint"], registry=r
        )
        self._messages = Counter(
            "confide_chat_messages", "Chat messages acknowledged", registry=r
        )
        self._frame_bytes = Histogram(
            "confide_frame_bytes", "Sizes of received frames", ["endpoint"],
            buckets=SIZE_BUCKETS, registry=r,
        )
        self._errors = Counter(
            "confide_errors", "Error frames sent, by code", ["endpoint", "code"], registry=r
        )
        self._ack_latency = Histogram(
            "confide_ack_latency_seconds", "Chat message receipt to durable ack",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self._slow = Counter(
            "confide_slow_consumers", "Connections closed for a full send queue", ["endpoint"],
            registry=r,
        )
        self._memory = Gauge(
            "confide_memory_bytes", "Resident memory of this gateway replica", registry=r
        )
        # plain figures for the analytics snapshot
        self.conns: dict[str, int] = {}
        self.counts: dict[str, int] = {"messages": 0, "frames_in": 0, "frames_out": 0,
                                       "errors": 0, "resumes": 0, "resumes_recovered": 0}
        self.errors_by_code: dict[str, int] = {}
        self.closes_by_code: dict[str, int] = {}
        self._dur_total = 0.0
        self._dur_count = 0
        self._bytes_total = 0
        self.ack = Window()
        self._unsent_frames: dict[str, int] = {}

    def opened(self, endpoint: str) -> None:
        self._connections.labels(endpoint).inc()
        self._opened.labels(endpoint).inc()
        self.conns[endpoint] = self.conns.get(endpoint, 0) + 1

    def ended(self, endpoint: str, seconds: float) -> None:
        self._connections.labels(endpoint).dec()
        self._duration.labels(endpoint).observe(seconds)
        self.conns[endpoint] -= 1
        self._dur_total += seconds
        self._dur_count += 1

    def closed(self, endpoint: str, code: int) -> None:
        self._closes.labels(str(code)).inc()
        self.closes_by_code[str(code)] = self.closes_by_code.get(str(code), 0) + 1

    def resumed(self, recovered: bool) -> None:
        self._resumes.labels(str(recovered).lower()).inc()
        self.counts["resumes"] += 1
        self.counts["resumes_recovered"] += int(recovered)

    def received(self, endpoint: str, size: int) -> None:
        self._frames_in.labels(endpoint).inc()
        self._frame_bytes.labels(endpoint).observe(size)
        self.counts["frames_in"] += 1
        self._bytes_total += size

    def sent(self, endpoint: str, size: int) -> None:
        # The hottest counter (once per delivery): plain ints, into Prometheus on render.
        self._unsent_frames[endpoint] = self._unsent_frames.get(endpoint, 0) + 1
        self.counts["frames_out"] += 1

    def _flush(self) -> None:
        for endpoint, n in self._unsent_frames.items():
            self._frames_out.labels(endpoint).inc(n)
        self._unsent_frames.clear()

    def error(self, endpoint: str, code: str) -> None:
        self._errors.labels(endpoint, code).inc()
        self.counts["errors"] += 1
        self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1

    def acked(self, seconds: float) -> None:
        self._messages.inc()
        self._ack_latency.observe(seconds)
        self.counts["messages"] += 1
        self.ack.add(seconds)

    def slow_consumer(self, endpoint: str) -> None:
        self._slow.labels(endpoint).inc()

    def render(self) -> bytes:
        self._flush()
        self._memory.set(rss_mb() * 2**20)
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """Figures for the `system` stream (counters are totals; the stream makes rates)."""
        frames = self.counts["frames_in"]
        out: dict[str, Any] = dict(self.counts)
        out |= {
            "connections": dict(self.conns),
            "errors_by_code": dict(self.errors_by_code),
            "closes_by_code": dict(self.closes_by_code),
            "duration_mean": self._dur_total / self._dur_count if self._dur_count else None,
            "duration_count": self._dur_count,
            "bytes_mean": self._bytes_total / frames if frames else None,
            "bytes_count": frames,
            "ack_count": self.ack.count,
            "rss_mb": rss_mb(),
        }
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            v = self.ack.quantile(q)
            out[f"ack_{name}_ms"] = v * 1000 if v is not None else None
        return out
