"""REST requests as audit actions: the route names the action and its target."""

from __future__ import annotations

from gateway.audit import rest_action


def test_known_routes_name_their_action_and_target() -> None:
    assert rest_action("DELETE", "/api/fhe/keys/{key_id}", {"key_id": "k1"},
                       "/api/fhe/keys/k1") == ("key.delete", "k1")
    assert rest_action("GET", "/api/fhe/keys/{key_id}", {"key_id": "k1"},
                       "/api/fhe/keys/k1") == ("key.fetch", "k1")
    assert rest_action("GET", "/api/fhe/keys/{key_id}/public", {"key_id": "k2"},
                       "/api/fhe/keys/k2/public") == ("key.fetch", "k2")
    assert rest_action("PUT", "/api/sessions/{session_id}/fhe", {"session_id": "s1"},
                       "/api/sessions/s1/fhe") == ("session.configure", "s1")
    assert rest_action("GET", "/api/audit", {}, "/api/audit") == ("audit.read", "audit")
    assert rest_action("POST", "/api/fhe/keys", {}, "/api/fhe/keys") == ("key.register", "*")


def test_other_routes_are_requests_of_their_path() -> None:
    assert rest_action("POST", "/api/notifications", {}, "/api/notifications") == (
        "request", "POST /api/notifications")
    assert rest_action("GET", None, {}, "/nowhere") == ("request", "GET /nowhere")
