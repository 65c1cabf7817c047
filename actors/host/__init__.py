"""The host actor: many entities (chat sessions, inboxes, streams) in one Ray actor.

`Host` is the logic without Ray (driven directly by unit tests); `HostActor` is the Ray
actor around it; `HostClient` is the typed client a gateway replica uses, one per host.
"""

from actors.host.actor import HostActor
from actors.host.client import HostClient
from actors.host.host import Host

__all__ = ["Host", "HostActor", "HostClient"]
