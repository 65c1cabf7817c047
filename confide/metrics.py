"""Operational metrics of a gateway replica, as Prometheus metrics named `confide_*`."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
DURATION_BUCKETS = (1, 5, 30, 60, 300, 900, 1800, 3600, 7200, 14400)


class GatewayStats:
    """Counters a replica keeps; `/metrics` renders them, analytics streams read them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "confide_connections", "Open WebSocket connections", ["endpoint"], registry=r
        )
        self.connections_total = Counter(
            "confide_connections_opened", "WebSocket connections opened", ["endpoint"],
            registry=r,
        )
        self.connection_seconds = Histogram(
            "confide_connection_duration_seconds", "How long connections lasted", ["endpoint"],
            buckets=DURATION_BUCKETS, registry=r,
        )
        self.closes = Counter(
            "confide_closes", "Connections closed by the server, by close code", ["code"],
            registry=r,
        )
        self.resumes = Counter(
            "confide_resume_attempts", "Reconnections with resume, by outcome", ["recovered"],
            registry=r,
        )
        self.frames_in = Counter(
            "confide_frames_received", "Frames received", ["endpoint"], registry=r
        )
        self.frames_out = Counter(
            "confide_frames_sent", "Frames sent", ["endpoint"], registry=r
        )
        self.messages = Counter(
            "confide_chat_messages", "Chat messages acknowledged", registry=r
        )
        self.frame_bytes = Histogram(
            "confide_frame_bytes", "Sizes of received frames", ["endpoint"],
            buckets=SIZE_BUCKETS, registry=r,
        )
        self.errors = Counter(
            "confide_errors", "Error frames sent, by code", ["endpoint", "code"], registry=r
        )
        self.ack_latency = Histogram(
            "confide_ack_latency_seconds", "Chat message receipt to durable ack",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.slow_consumers = Counter(
            "confide_slow_consumers", "Connections closed for a full send queue", ["endpoint"],
            registry=r,
        )
        self.started = time.time()

    def opened(self, endpoint: str) -> None:
        self.connections.labels(endpoint).inc()
        self.connections_total.labels(endpoint).inc()

    def ended(self, endpoint: str, seconds: float) -> None:
        self.connections.labels(endpoint).dec()
        self.connection_seconds.labels(endpoint).observe(seconds)

    def closed(self, endpoint: str, code: int) -> None:
        self.closes.labels(str(code)).inc()

    def resumed(self, recovered: bool) -> None:
        self.resumes.labels(str(recovered).lower()).inc()

    def received(self, endpoint: str, size: int) -> None:
        self.frames_in.labels(endpoint).inc()
        self.frame_bytes.labels(endpoint).observe(size)

    def sent(self, endpoint: str, size: int) -> None:
        self.frames_out.labels(endpoint).inc()

    def error(self, endpoint: str, code: str) -> None:
        self.errors.labels(endpoint, code).inc()

    def acked(self, seconds: float) -> None:
        self.messages.inc()
        self.ack_latency.observe(seconds)

    def slow_consumer(self, endpoint: str) -> None:
        self.slow_consumers.labels(endpoint).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
