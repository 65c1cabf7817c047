"""The FHE workers' autoscaling policy: ongoing requests plus the hosts' backlog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.fhe_autoscale import BACKLOG, backlog_folds, backlog_policy


@dataclass
class Config:
    target: float

    def get_target_ongoing_requests(self) -> float:
        return self.target


@dataclass
class Ctx:
    current_num_replicas: int
    total_num_requests: float
    aggregated_metrics: dict[str, dict[Any, float]] | None = None
    target_num_replicas: int = 1
    config: Config = field(default_factory=lambda: Config(16))


def test_backlog_adds_to_ongoing_requests() -> None:
    assert backlog_policy(Ctx(1, 16))[0] == 1.0  # the default policy's answer
    busy = Ctx(1, 16, {BACKLOG: {"r1": 32.0, "r2": 32.0}})  # same figure from each replica
    assert backlog_policy(busy)[0] == 3.0
    assert backlog_policy(Ctx(2, 0, {BACKLOG: {}}))[0] == 0.0
    assert backlog_policy(Ctx(0, 5, None, target_num_replicas=1))[0] == 1


def test_queued_contributions_as_fold_requests() -> None:
    assert backlog_folds(0, 16) == 0
    assert backlog_folds(1, 16) == 1
    assert backlog_folds(33, 16) == 3


def test_worker_deployment_uses_the_policy() -> None:
    from ray.serve.config import AutoscalingConfig

    from actors.fhe_worker import fhe_worker_options
    from confide.config import Settings

    options = fhe_worker_options(Settings(jwt_secret="x" * 32))
    config = AutoscalingConfig(**options["autoscaling_config"])
    policy = config.policy.get_policy()  # a cloudpickled copy of it
    assert (policy.__module__, policy.__name__) == ("actors.fhe_autoscale", "backlog_policy")
    assert policy(Ctx(1, 16, {BACKLOG: {"r": 16.0}}))[0] == 2.0
