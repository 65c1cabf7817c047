"""Audit events seen by a gateway replica: refused authorizations (WebSocket closes 4401
and 4403, `forbidden` error frames, REST 401 and 403) and access to FHE keys.

Events go to the host that owns the `audit` entity, batched with every other event of
the replica (one Ray call in flight), never awaited by the connection or request.
"""

from __future__ import annotations

import logging
import time

from actors.directory import Directory
from confide import audit
from confide.audit import ANONYMOUS, Outcome

log = logging.getLogger("confide.audit")

#: The entity id whose host receives a gateway's audit events and answers queries.
AUDIT_ENTITY = "audit"

#: REST routes (method, path template) → the action they are recorded as, and the path
#: parameter that names its target. Other routes are recorded as `request` of their path.
REST_ACTIONS: dict[tuple[str, str], tuple[str, str | None]] = {
    ("POST", "/api/fhe/keys"): (audit.KEY_REGISTER, None),
    ("GET", "/api/fhe/keys/{key_id}"): (audit.KEY_FETCH, "key_id"),
    ("GET", "/api/fhe/keys/{key_id}/public"): (audit.KEY_FETCH, "key_id"),
    ("DELETE", "/api/fhe/keys/{key_id}"): (audit.KEY_DELETE, "key_id"),
    ("PUT", "/api/sessions/{session_id}/fhe"): (audit.SESSION_CONFIGURE, "session_id"),
    ("GET", "/api/notifications/{notification_id}"): (
        audit.NOTIFICATION_STATUS, "notification_id"),
    ("GET", "/api/audit"): (audit.AUDIT_READ, None),
}
#: The target of an action whose route names none.
NO_TARGET = {audit.AUDIT_READ: "audit", audit.KEY_REGISTER: "*"}


def record(hosts: Directory, actor: str, action: str, target: str,
           outcome: Outcome = "ok") -> None:
    """Send one event on its way (returns at once; never raises: recording must not break
    the connection or request it is about)."""
    rec = audit.record(time.time(), actor, action, target, outcome)
    try:
        hosts.host_for(AUDIT_ENTITY).audit(rec)
    except Exception as exc:  # noqa: BLE001
        log.warning("an audit event could not be queued: %s", type(exc).__name__)


def rest_action(method: str, template: str | None, params: dict[str, str],
                path: str) -> tuple[str, str]:
    """(action, target) of a REST request."""
    known = REST_ACTIONS.get((method, template or ""))
    if known is None:
        return audit.REQUEST, f"{method} {path}"
    action, param = known
    return action, params.get(param, "") if param else NO_TARGET[action]


__all__ = ["ANONYMOUS", "AUDIT_ENTITY", "REST_ACTIONS", "record", "rest_action"]
