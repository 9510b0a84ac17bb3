"""Round-trip-time smoothing for adaptive timeouts (RFC 6298, as TCP and nmap do)."""

from __future__ import annotations


class RttEstimator:
    """SRTT and RTTVAR from RTT samples; the timeout is SRTT + 4 RTTVAR, kept within
    [``min_timeout_s``, ``max_timeout_s``], and ``initial_timeout_s`` before any sample."""

    __slots__ = ("initial_timeout_s", "max_timeout_s", "min_timeout_s", "rttvar_s", "srtt_s")

    def __init__(
        self, initial_timeout_s: float, min_timeout_s: float, max_timeout_s: float
    ) -> None:
        self.initial_timeout_s = initial_timeout_s
        self.min_timeout_s = min_timeout_s
        self.max_timeout_s = max_timeout_s
        self.srtt_s: float | None = None
        self.rttvar_s: float | None = None

    def sample(self, rtt_s: float) -> None:
        if self.srtt_s is None or self.rttvar_s is None:
            self.srtt_s, self.rttvar_s = rtt_s, rtt_s / 2
        else:
            self.rttvar_s = 0.75 * self.rttvar_s + 0.25 * abs(self.srtt_s - rtt_s)
            self.srtt_s = 0.875 * self.srtt_s + 0.125 * rtt_s

    @property
    def timeout_s(self) -> float:
        if self.srtt_s is None or self.rttvar_s is None:
            return self.initial_timeout_s
        adaptive = self.srtt_s + 4 * self.rttvar_s
        return min(self.max_timeout_s, max(self.min_timeout_s, adaptive))
