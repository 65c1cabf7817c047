"""The audit trail (sans-I/O): who accessed which therapy data, when, and with what outcome.

A record names an actor (a user id, `-` when the caller could not be authenticated), an
action, its target (a session id, a notification id, a key id, an endpoint) and an
outcome. It never holds a body, a token or a ciphertext. Records are gathered in an
`AuditBuffer` and written to the store in batches, off the path of chat messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: What is recorded (PROTOCOL 1.1, "Audit trail").
SESSION_JOIN = "session.join"
SESSION_LEAVE = "session.leave"
SESSION_END = "session.end"
SESSION_CONFIGURE = "session.configure"
NOTIFICATION_READ = "notification.read"
NOTIFICATION_STATUS = "notification.status"
KEY_REGISTER = "key.register"
KEY_FETCH = "key.fetch"
KEY_DELETE = "key.delete"
AUDIT_READ = "audit.read"
#: A WebSocket or REST request refused before any action: a bad or missing token, or a
#: role the endpoint does not serve.
CONNECT = "connect"
REQUEST = "request"

Outcome = Literal["ok", "denied", "unauthenticated"]

#: The actor of a request whose token could not be verified.
ANONYMOUS = "-"

#: Longest actor, action and target kept (ids are bounded by the protocol anyway).
MAX_FIELD = 256


@dataclass(frozen=True)
class AuditRecord:
    ts: float
    actor: str
    action: str
    target: str
    outcome: str

    def dump(self) -> dict[str, object]:
        return {"ts": self.ts, "actor": self.actor, "action": self.action,
                "target": self.target, "outcome": self.outcome}


def record(ts: float, actor: str, action: str, target: str,
           outcome: Outcome = "ok") -> AuditRecord:
    """A record with every field bounded."""
    return AuditRecord(ts, actor[:MAX_FIELD] or ANONYMOUS, action[:MAX_FIELD],
                       target[:MAX_FIELD], outcome)


class AuditBuffer:
    """Records waiting for their batched write, oldest first.

    At most `capacity` wait: past that (the store has been failing for a long while) the
    oldest are dropped and counted in `dropped`. A failed write puts its batch back.
    """

    def __init__(self, capacity: int = 100_000, batch: int = 1000) -> None:
        self._capacity = capacity
        self.batch = batch
        self._pending: list[AuditRecord] = []
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, rec: AuditRecord) -> None:
        self._pending.append(rec)
        self._trim()

    def extend(self, recs: list[AuditRecord]) -> None:
        self._pending.extend(recs)
        self._trim()

    def full_batch(self) -> bool:
        """Enough waits for a write now rather than at the next tick."""
        return len(self._pending) >= self.batch

    def take(self) -> list[AuditRecord]:
        taken, self._pending = self._pending, []
        return taken

    def put_back(self, recs: list[AuditRecord]) -> None:
        """A write failed: its records go back in front, in order."""
        self._pending = recs + self._pending
        self._trim()

    def _trim(self) -> None:
        over = len(self._pending) - self._capacity
        if over > 0:
            del self._pending[:over]
            self.dropped += over
