"""confide/client/options.py: the reconnect delay (full-jitter backoff)."""

from __future__ import annotations

import random

from confide.client.options import backoff_delay


def test_backoff_bounds_double_up_to_the_cap() -> None:
    upper = [backoff_delay(n, 0.5, 20.0, uniform=lambda lo, hi: hi) for n in range(9)]
    assert upper == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0]
    assert backoff_delay(10_000, 0.5, 20.0, uniform=lambda lo, hi: hi) == 20.0
    assert backoff_delay(3, 0.5, 20.0, uniform=lambda lo, hi: lo) == 0.0


def test_backoff_is_full_jitter() -> None:
    rng = random.Random(7)
    for attempt in range(8):
        cap = min(20.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 20.0, uniform=rng.uniform) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert len(set(delays)) == 200  # jittered, not a fixed schedule
        assert min(delays) < cap * 0.2 and max(delays) > cap * 0.8  # spread over [0, cap]
