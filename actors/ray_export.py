"""Cluster-wide export: mirror a replica's Prometheus registry into `ray.util.metrics`.

Ray's metrics agent on every node serves what is recorded here to Prometheus, with
Ray's `ray_` prefix (`confide_chat_messages` becomes `ray_confide_chat_messages`).
Counters and histogram series are exported as counters of their increments, gauges
as gauges, so the cluster view sums over replicas.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from ray.util import metrics as ray_metrics


class RayExporter:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._metrics: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _metric(self, name: str, kind: str, doc: str, tag_keys: tuple[str, ...]) -> Any:
        found = self._metrics.get(name)
        if found is None:
            cls = ray_metrics.Gauge if kind == "gauge" else ray_metrics.Counter
            found = self._metrics[name] = cls(name, doc, tag_keys=tag_keys)
        return found

    def export(self) -> None:
        for family in self._registry.collect():
            kind = "gauge" if family.type == "gauge" else "counter"
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = tuple(sorted(sample.labels.items()))
                metric = self._metric(sample.name, kind, family.documentation,
                                      tuple(k for k, _ in labels))
                tags = dict(labels)
                if kind == "gauge":
                    metric.set(sample.value, tags=tags)
                    continue
                key = (sample.name, labels)
                delta = sample.value - self._last.get(key, 0.0)
                self._last[key] = sample.value
                if delta > 0:
                    metric.inc(delta, tags=tags)
