"""Result values of the probes: frozen, slotted, seconds inside; statistics derived."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PingReply:
    """One echo reply. ``duplicate`` replies are reported but not counted as received."""

    seq: int
    source: str
    rtt_s: float
    ttl: int | None
    size: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class PingError:
    """A probe answered by an ICMP error, or refused by the local stack at send time
    (then ``icmp_type`` is None and ``reason`` names the errno)."""

    seq: int
    source: str
    reason: str
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True, slots=True)
class PingResult:
    """Everything one host's ping produced."""

    address: str
    transmitted: int
    replies: tuple[PingReply, ...]
    errors: tuple[PingError, ...]
    elapsed_s: float
    payload_size: int

    @property
    def received(self) -> int:
        return sum(1 for reply in self.replies if not reply.duplicate)

    @property
    def duplicates(self) -> int:
        return sum(1 for reply in self.replies if reply.duplicate)

    @property
    def rtts(self) -> tuple[float, ...]:
        """RTTs in seconds of the first reply to each probe, in arrival order."""
        return tuple(reply.rtt_s for reply in self.replies if not reply.duplicate)

    @property
    def packet_loss(self) -> float:
        """Fraction of probes without a reply, 0.0 to 1.0 (0.0 when none was sent)."""
        if self.transmitted == 0:
            return 0.0
        return max(0.0, (self.transmitted - self.received) / self.transmitted)

    @property
    def is_alive(self) -> bool:
        return self.received > 0

    @property
    def min_rtt_s(self) -> float | None:
        return min(self.rtts) if self.rtts else None

    @property
    def max_rtt_s(self) -> float | None:
        return max(self.rtts) if self.rtts else None

    @property
    def avg_rtt_s(self) -> float | None:
        rtts = self.rtts
        return sum(rtts) / len(rtts) if rtts else None

    @property
    def mdev_s(self) -> float | None:
        """iputils' mdev: the standard deviation sqrt(E[x²] - E[x]²)."""
        rtts = self.rtts
        if not rtts:
            return None
        mean = sum(rtts) / len(rtts)
        mean_sq = sum(r * r for r in rtts) / len(rtts)
        return math.sqrt(max(0.0, mean_sq - mean * mean))

    @property
    def jitter_s(self) -> float | None:
        """Mean absolute difference between consecutive RTTs (RFC 3550 style, unsmoothed)."""
        rtts = self.rtts
        if len(rtts) < 2:
            return None
        return sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (len(rtts) - 1)
