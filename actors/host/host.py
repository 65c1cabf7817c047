"""`Host`: every entity operation of a host actor, without Ray (unit tests drive it)."""

from __future__ import annotations

from actors.host.audit_ops import AuditOps
from actors.host.chat_ops import ChatOps
from actors.host.conn_ops import ConnOps
from actors.host.inbox_ops import InboxOps
from actors.host.stream_ops import StreamOps


class Host(ChatOps, InboxOps, StreamOps, ConnOps, AuditOps):
    """Chat sessions, inboxes and analytics streams of one host actor (see HostBase)."""
