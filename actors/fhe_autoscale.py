"""The FHE workers' autoscaling policy: ongoing requests plus the hosts' queued work.

Serve's default policy sizes a deployment by its ongoing requests only, but encrypted
contributions wait on the hosts (per-stream queues, up to `fhe_host_queue_bytes`) before
they become fold requests. Every worker replica reports, as a custom autoscaling metric,
the cluster's host backlog in fold requests (queued contributions / shard size; each
replica reports the same cluster-wide figure), and this policy adds it to the ongoing
requests: desired replicas = (ongoing + backlog) / target ongoing requests per replica.
Serve applies min/max replicas and the up/downscale delays around it.
"""

from __future__ import annotations

from typing import Any

#: The custom metric each replica reports (`FheWorker.record_autoscaling_stats`).
BACKLOG = "host_backlog_folds"
POLICY = "actors.fhe_autoscale:backlog_policy"


def backlog_folds(queued_contributions: int, shard_size: int) -> float:
    """The hosts' queued contributions as the fold requests they will become."""
    return -(-queued_contributions // max(1, shard_size)) if queued_contributions > 0 else 0.0


def backlog_policy(ctx: Any) -> tuple[float, dict[str, Any]]:
    """Serve custom autoscaling policy (Ray 2.60 `AutoscalingContext`)."""
    if ctx.current_num_replicas == 0:
        return ctx.target_num_replicas, {}
    metrics = ctx.aggregated_metrics or {}
    reports = metrics.get(BACKLOG) or {}
    backlog = max(reports.values()) if reports else 0.0
    target = ctx.config.get_target_ongoing_requests()
    return (float(ctx.total_num_requests) + float(backlog)) / target, {}
