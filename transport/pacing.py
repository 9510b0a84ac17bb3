"""Send pacing: one token bucket per transport.

Pure arithmetic on an injected clock (``take`` returns how long to wait), so it is
tested with plain numbers; the transport does the waiting.
"""

from __future__ import annotations

#: Polite default: enough for interactive pings and traces, far from a flood.
DEFAULT_RATE_PPS = 10_000


class TokenBucket:
    """``rate_pps`` tokens per second, at most ``burst`` saved up. ``rate_pps=0`` means
    no limit."""

    __slots__ = ("_last", "_tokens", "burst", "rate_pps")

    def __init__(self, rate_pps: float, burst: int | None = None, now: float = 0.0) -> None:
        if rate_pps < 0:
            raise ValueError("rate_pps must be >= 0")
        self.rate_pps = rate_pps
        self.burst = burst if burst is not None else max(1, int(rate_pps // 100))
        self._tokens = float(self.burst)
        self._last = now

    def take(self, now: float) -> float:
        """Take one token; return 0.0 to send now, or the seconds to wait first.

        A caller that must wait has already been granted its token: after sleeping the
        returned delay it sends without calling ``take`` again.
        """
        if self.rate_pps == 0:
            return 0.0
        elapsed = now - self._last
        self._last = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_pps)
        self._tokens -= 1.0
        if self._tokens >= 0.0:
            return 0.0
        return -self._tokens / self.rate_pps
