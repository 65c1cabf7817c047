"""The directory of host actors: a typed client per host, and routing by entity id."""

from __future__ import annotations

import ray

from actors.host import HostActor, HostClient
from actors.routing import host_index, host_name
from confide.config import Settings, actor_config

__all__ = ["Directory", "host_index", "host_name", "kill_hosts"]


class Directory:
    """Clients of the detached, named host actors; created on first use (get-or-create)."""

    def __init__(self, settings: Settings) -> None:
        config = actor_config(settings)
        # Soft spread: hosts go to different nodes while there are nodes to go to. A host
        # on a node that dies is restarted elsewhere (max_restarts=-1) and reloads its
        # entities from the store on first use. No task events: Ray's GCS keeps one per
        # call (up to 100,000), and hosts take a call per batch of chat messages; a
        # 30-minute soak grew the GCS by 210 MB with them (Serve's replicas have none).
        self.hosts: list[HostClient] = [
            HostClient(HostActor.options(  # type: ignore[attr-defined]
                name=host_name(k),
                namespace=settings.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                scheduling_strategy="SPREAD",
                enable_task_events=False,
            ).remote(config, k), submit_bytes=settings.fhe_host_queue_bytes)
            for k in range(settings.hosts)
        ]

    def index_for(self, entity_id: str) -> int:
        return host_index(entity_id, len(self.hosts))

    def host_for(self, entity_id: str) -> HostClient:
        return self.hosts[self.index_for(entity_id)]


def kill_hosts(settings: Settings) -> None:
    """Stop a deployment's host actors for good (they are detached)."""
    for k in range(settings.hosts):
        try:
            actor = ray.get_actor(host_name(k), namespace=settings.ray_namespace)
        except ValueError:
            continue
        ray.kill(actor, no_restart=True)
