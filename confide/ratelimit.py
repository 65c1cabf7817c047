"""Per-connection token bucket, with the abuse rule of PROTOCOL.md."""

from __future__ import annotations

#: A client that has had no frame dropped for this long is no longer "limited".
CALM_S = 1.0


class TokenBucket:
    """`rate` tokens a second, up to `burst`. Time is passed in: no clock inside.

    A client is abusive when frames keep being dropped for `abuse_s`: it is "limited"
    from its first dropped frame until it goes `CALM_S` without one.
    """

    def __init__(self, rate: float, burst: int, abuse_s: float, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._abuse_s = abuse_s
        self._tokens = float(burst)
        self._last = now
        self._limited_since: float | None = None
        self._last_drop = now

    def allow(self, now: float) -> bool:
        """Take a token for one frame; False when the frame must be dropped."""
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._limited_since is not None and now - self._last_drop >= CALM_S:
            self._limited_since = None
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._limited_since is None:
            self._limited_since = now
        self._last_drop = now
        return False

    def abusive(self, now: float) -> bool:
        """True when the client has kept sending while limited for `abuse_s` (close 4429)."""
        return self._limited_since is not None and now - self._limited_since >= self._abuse_s
