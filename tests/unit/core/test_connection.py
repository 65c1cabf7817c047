"""Per-connection inbound rules: handshake, frame size, token expiry, rate limit, parsing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from confide.auth import Principal, TokenVerifier, mint_token
from confide.config import Settings
from confide.connection import InboundGate, authenticate, bearer, frame_limit
from confide.errors import (
    CloseCode,
    CloseConnection,
    InvalidMessage,
    RateLimited,
    Unauthorized,
    UnknownType,
)
from confide.protocol import ChatMessage, Ping, Subscribe

from .conftest import SECRET

PING = '{"type":"ping"}'


def gate(
    principal: Principal,
    endpoint: str = "chat",
    limit: int = 64 * 1024,
    **overrides: float,
) -> InboundGate:
    settings = Settings(jwt_secret=SECRET, **overrides)  # type: ignore[arg-type]
    return InboundGate(settings, endpoint, principal, now=0.0, limit=limit)  # type: ignore[arg-type]


# ------------------------------------------------------------------ frame limits


def test_frame_limits_follow_protocol() -> None:
    s = Settings(jwt_secret=SECRET)
    assert frame_limit(s, "chat") == 64 * 1024
    assert frame_limit(s, "notifications") == 64 * 1024
    assert frame_limit(s, "analytics") == 8 * 1024 * 1024
    assert frame_limit(s, "chat", large=True) == 8 * 1024 * 1024


# ------------------------------------------------------------------ bearer header


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


# ------------------------------------------------------------------ handshake


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET))


def test_authenticate_with_token_in_hello(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, "alice", sessions=["s1"])
    who, hello = authenticate(verifier, None, json.dumps({"type": "hello", "token": token}))
    assert who.user == "alice" and who.may_join("s1")
    assert hello.token == token


def test_authenticate_with_header_token(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, "bob")
    hello_text = json.dumps({"type": "hello", "resume": {"offset": 3, "epoch": "e"}})
    who, hello = authenticate(verifier, token, hello_text)
    assert who.user == "bob"
    assert hello.resume is not None and hello.resume.offset == 3


def test_hello_token_wins_over_header(verifier: TokenVerifier) -> None:
    first = json.dumps({"type": "hello", "token": mint_token(SECRET, "alice")})
    who, _ = authenticate(verifier, mint_token(SECRET, "bob"), first)
    assert who.user == "alice"


@pytest.mark.parametrize(
    "first",
    ['{"type":"ping"}', "not json", "[]", '{"type":"message","id":"m","body":{}}', b"\xff"],
)
def test_first_frame_not_hello_closes_4400(verifier: TokenVerifier, first: str | bytes) -> None:
    with pytest.raises(CloseConnection) as err:
        authenticate(verifier, mint_token(SECRET, "alice"), first)
    assert err.value.close_code == CloseCode.BAD_HANDSHAKE == 4400


def test_no_token_anywhere_closes_4401(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthorized) as err:
        authenticate(verifier, None, '{"type":"hello"}')
    assert err.value.close_code == 4401


def test_bad_token_closes_4401(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthorized):
        authenticate(verifier, None, json.dumps({"type": "hello", "token": "x.y.z"}))
    with pytest.raises(Unauthorized):
        authenticate(verifier, mint_token("wrong-secret-wrong-secret-wrong-secret", "a"),
                     '{"type":"hello"}')


# ------------------------------------------------------------------ the gate


def test_gate_parses_frames_for_its_endpoint(principal: Callable[..., Principal]) -> None:
    g = gate(principal())
    assert isinstance(g.check(PING, 0.0), Ping)
    assert isinstance(g.check('{"type":"message","id":"m","body":{}}', 0.0), ChatMessage)
    assert isinstance(g.check(PING.encode(), 0.0), Ping)
    with pytest.raises(UnknownType):
        g.check('{"type":"subscribe","stream":"system"}', 0.0)
    a = gate(principal(), endpoint="analytics")
    assert isinstance(a.check('{"type":"subscribe","stream":"system"}', 0.0), Subscribe)


def test_gate_invalid_frames(principal: Callable[..., Principal]) -> None:
    g = gate(principal())
    with pytest.raises(InvalidMessage):
        g.check("nope", 0.0)
    with pytest.raises(InvalidMessage):
        g.check(b"\xff\xfe", 0.0)
    with pytest.raises(InvalidMessage):
        g.check("[" * 20_000, 0.0)


def test_frame_over_limit_closes_1009(principal: Callable[..., Principal]) -> None:
    g = gate(principal(), limit=100)
    pad = "x" * (100 - len('{"type":"ping","p":""}'))
    assert isinstance(g.check(f'{{"type":"ping","p":"{pad}"}}', 0.0), Ping)  # exactly 100
    with pytest.raises(CloseConnection) as err:
        g.check(f'{{"type":"ping","p":"{pad}x"}}', 0.0)
    assert err.value.close_code == CloseCode.TOO_LARGE == 1009


def test_frame_size_counts_utf8_bytes(principal: Callable[..., Principal]) -> None:
    g = gate(principal(), limit=100)
    text = '{"type":"ping","p":"' + "é" * 39 + '"}'  # 61 characters, 100 bytes
    assert (len(text), len(text.encode())) == (61, 100)
    g.check(text, 0.0)
    with pytest.raises(CloseConnection) as err:
        g.check(text.replace("é", "éé", 1), 0.0)
    assert err.value.close_code == 1009


def test_size_checked_before_parsing_and_rate(principal: Callable[..., Principal]) -> None:
    g = gate(principal(), limit=10, rate_burst=1)
    with pytest.raises(CloseConnection) as err:
        g.check("x" * 11, 0.0)
    assert err.value.close_code == 1009


def test_expired_token_mid_connection(principal: Callable[..., Principal]) -> None:
    g = gate(principal(expires_at=100.0))  # the default leeway: 30 s
    assert isinstance(g.check(PING, 129.9), Ping)
    with pytest.raises(Unauthorized) as err:
        g.check(PING, 130.0)
    assert err.value.close_code == 4401
    assert err.value.reason == "token expired"


def test_rate_limited_carries_frame_id(principal: Callable[..., Principal]) -> None:
    g = gate(principal(), rate_per_s=20, rate_burst=2)
    g.check(PING, 0.0)
    g.check(PING, 0.0)
    with pytest.raises(RateLimited) as err:
        g.check('{"type":"message","id":"m-42","body":{}}', 0.0)
    assert err.value.frame_id == "m-42"
    assert err.value.code.value == "rate_limited"
    with pytest.raises(RateLimited) as err:
        g.check("not json at all", 0.0)
    assert err.value.frame_id is None
    with pytest.raises(RateLimited) as err:
        g.check("[" * 20_000, 0.0)  # the id peek must not crash either
    assert err.value.frame_id is None
    # the limit lifts with time
    assert isinstance(g.check(PING, 0.05), Ping)


def test_rate_limited_frames_are_dropped_not_parsed(principal: Callable[..., Principal]) -> None:
    g = gate(principal(), rate_burst=1)
    g.check(PING, 0.0)
    with pytest.raises(RateLimited):
        g.check('{"type":"bogus"}', 0.0)  # not UnknownType: dropped before parsing


def test_abusive_client_closed_4429(principal: Callable[..., Principal]) -> None:
    """Defaults: 20 frames/s, burst 40, 4429 after 10 s of sending while limited."""
    g = gate(principal())
    outcomes: dict[str, list[float]] = {"ok": [], "limited": []}
    closed_at = None
    for i in range(200 * 12):  # 200 frames/s
        now = i / 200
        try:
            g.check(PING, now)
            outcomes["ok"].append(now)
        except RateLimited:
            outcomes["limited"].append(now)
        except CloseConnection as err:
            assert err.close_code == CloseCode.RATE_LIMITED == 4429
            closed_at = now
            break
    assert closed_at is not None and 10.0 <= closed_at <= 10.5
    assert len(outcomes["ok"]) <= 40 + 20 * closed_at + 1
    assert outcomes["limited"]


def test_slow_sender_never_closed(principal: Callable[..., Principal]) -> None:
    g = gate(principal(), rate_per_s=2, rate_burst=1, rate_abuse_s=1)
    for i in range(100):
        assert isinstance(g.check(PING, i * 0.5), Ping)


def test_gate_defaults_allow_the_protocol_burst(principal: Callable[..., Principal]) -> None:
    g = gate(principal())
    now = time.time()  # any clock: the gate only compares the values it is given
    g2 = InboundGate(Settings(jwt_secret=SECRET), "chat", principal(), now, 65536)
    for _ in range(40):
        g.check(PING, 0.0)
        g2.check(PING, now)
    with pytest.raises(RateLimited):
        g.check(PING, 0.0)


def test_expiry_mid_connection_uses_the_configured_leeway(
    principal: Callable[..., Principal],
) -> None:
    g = gate(principal(expires_at=100.0), jwt_leeway_s=0)
    assert isinstance(g.check(PING, 99.9), Ping)
    with pytest.raises(Unauthorized):
        g.check(PING, 100.0)
