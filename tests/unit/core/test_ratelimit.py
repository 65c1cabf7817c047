"""The per-connection token bucket (PROTOCOL.md, Errors: 20 frames/s, burst 40, 4429 after 10 s).

Time is passed in: every test drives the clock explicitly.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from confide.ratelimit import CALM_S, TokenBucket


def test_burst_then_refuse() -> None:
    b = TokenBucket(rate=20, burst=40, abuse_s=10, now=0.0)
    assert all(b.allow(0.0) for _ in range(40))
    assert not b.allow(0.0)
    assert not b.allow(0.0)


def test_refill_at_rate() -> None:
    b = TokenBucket(rate=20, burst=40, abuse_s=10, now=0.0)
    for _ in range(40):
        b.allow(0.0)
    assert not b.allow(0.01)  # 0.2 tokens
    assert b.allow(0.05)  # 1 token
    assert not b.allow(0.05)
    # one second refills 20 frames, no more
    assert sum(b.allow(1.05) for _ in range(30)) == 20


def test_refill_is_capped_at_burst() -> None:
    b = TokenBucket(rate=20, burst=40, abuse_s=10, now=0.0)
    for _ in range(40):
        b.allow(0.0)
    assert sum(b.allow(1000.0) for _ in range(100)) == 40


def test_starts_full() -> None:
    b = TokenBucket(rate=1, burst=3, abuse_s=10, now=100.0)
    assert [b.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_steady_rate_never_limited() -> None:
    b = TokenBucket(rate=20, burst=40, abuse_s=10, now=0.0)
    assert all(b.allow(i / 20) for i in range(2000))


def test_not_abusive_when_never_limited() -> None:
    b = TokenBucket(rate=20, burst=40, abuse_s=10, now=0.0)
    b.allow(0.0)
    assert not b.abusive(1000.0)


def test_abusive_after_abuse_s_of_continuous_limiting() -> None:
    # a slow rate, so that no token comes back while the client keeps sending
    b = TokenBucket(rate=0.01, burst=1, abuse_s=10, now=0.0)
    assert b.allow(0.0)
    drops = [round(0.9 * k, 1) for k in range(1, 14)]  # 0.9 s apart: never calm
    for t in drops:
        assert not b.allow(t)
        assert b.abusive(t) == (t - 0.9 >= 10)
    assert b.abusive(drops[-1])


def test_flooding_client_at_default_rate_becomes_abusive() -> None:
    """PROTOCOL.md: 'a client that keeps sending while limited for 10 s is closed with 4429'.

    A client sending 200 frames/s against 20/s is limited (90% dropped) from t=0.2 s on;
    the frames that still get a token do not make it calm.
    """
    b = TokenBucket(rate=20, burst=40, abuse_s=10, now=0.0)
    first_abusive = None
    for i in range(200 * 12):
        now = i / 200
        if not b.allow(now) and b.abusive(now):
            first_abusive = now
            break
    assert first_abusive is not None
    assert 10.0 <= first_abusive <= 10.5


def test_abuse_clock_resets_after_calm() -> None:
    b = TokenBucket(rate=1, burst=1, abuse_s=5, now=0.0)
    for i in range(31):  # flood at 10/s for 3 s
        b.allow(i / 10)
    assert not b.abusive(3.0)
    # silence for more than CALM_S, then a frame within the rate: no longer limited
    assert b.allow(3.0 + CALM_S + 0.5)
    t0 = 3.0 + CALM_S + 0.6
    for i in range(49):  # flood again for 4.8 s: not abusive, the clock restarted
        b.allow(t0 + i / 10)
        assert not b.abusive(t0 + i / 10)
    for i in range(49, 60):
        b.allow(t0 + i / 10)
    assert b.abusive(t0 + 5.9)


def test_drops_closer_than_calm_keep_the_streak() -> None:
    b = TokenBucket(rate=1, burst=1, abuse_s=5, now=0.0)
    t = 0.0
    while t < 6.0:  # 3 frames/s against 1/s: some get through, the rest are dropped
        b.allow(t)
        t = round(t + 1 / 3, 6)
    assert b.abusive(t)


@settings(max_examples=150, deadline=None, database=None)
@given(
    rate=st.floats(min_value=0.5, max_value=100),
    burst=st.integers(min_value=1, max_value=60),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_never_more_than_burst_plus_rate_times_t(
    rate: float, burst: int, gaps: list[float]
) -> None:
    b = TokenBucket(rate=rate, burst=burst, abuse_s=10, now=0.0)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += b.allow(now)
        assert allowed <= burst + rate * now + 1e-9
    # and a client that waits long enough always gets through again
    assert b.allow(now + math.ceil(1 / rate) + 1)
