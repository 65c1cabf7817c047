"""The options every client takes and the reconnect delay they set (see `Connection`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TypedDict


class ConnectionOptions(TypedDict, total=False):
    """Keyword options every client takes (see `Connection`)."""

    client_name: str
    heartbeat_s: float | None
    base_backoff_s: float
    max_backoff_s: float
    extra_headers: Mapping[str, str] | None
    token_in_header: bool
    open_timeout_s: float
    request_timeout_s: float
    event_buffer: int
    compress: bool


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Full jitter: a delay drawn from [0, min(max_s, base_s * 2**attempt)], attempt from 0."""
    return uniform(0.0, min(max_s, base_s * 2.0 ** min(attempt, 64)))
