"""Ping's result values (probes/ping.py): frozen, slotted, seconds inside; statistics
derived. Traces' results are in trace_models, scans' in scan_models: a command imports
only its own (each frozen, slotted dataclass costs start-up time)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rawprobe.transport.base import RttSource


@dataclass(frozen=True, slots=True)
class PingReply:
    """One echo reply. ``duplicate`` replies are reported but not counted as received.
    ``rtt_source``: which send stamp the RTT used (transport/base.py, ``measured_rtt``)."""

    seq: int
    source: str
    rtt_s: float
    ttl: int | None
    size: int
    duplicate: bool = False
    rtt_source: RttSource = "user"


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
class PingStats:
    """Running statistics of one host's ping: O(1) memory however long it runs.

    Exactly what the list of replies would give (the same sums in the same order):
    counts, min and max, the sum and sum of squares for the mean and iputils' mdev,
    the last RTT and the sum of the differences between consecutive RTTs for the
    jitter. Duplicates count apart and do not enter the RTT statistics.
    ``kernel_stamped`` counts the received replies whose RTT the kernel stamped at both
    ends (``rtt_source``).
    """

    received: int = 0
    duplicates: int = 0
    errors: int = 0
    min_s: float = math.inf
    max_s: float = -math.inf
    total_s: float = 0.0
    total_sq_s2: float = 0.0
    last_s: float | None = None
    jitter_total_s: float = 0.0
    kernel_stamped: int = 0

    def with_reply(
        self, rtt_s: float, duplicate: bool = False, rtt_source: RttSource = "user"
    ) -> PingStats:
        if duplicate:
            return dataclasses.replace(self, duplicates=self.duplicates + 1)
        last = self.last_s
        return PingStats(
            self.received + 1,
            self.duplicates,
            self.errors,
            min(self.min_s, rtt_s),
            max(self.max_s, rtt_s),
            self.total_s + rtt_s,
            self.total_sq_s2 + rtt_s * rtt_s,
            rtt_s,
            self.jitter_total_s + (abs(rtt_s - last) if last is not None else 0.0),
            self.kernel_stamped + (rtt_source == "kernel"),
        )

    def with_error(self) -> PingStats:
        return dataclasses.replace(self, errors=self.errors + 1)

    @classmethod
    def of(cls, replies: Iterable[PingReply], errors: int = 0) -> PingStats:
        stats = cls(errors=errors)
        for reply in replies:
            stats = stats.with_reply(reply.rtt_s, reply.duplicate, reply.rtt_source)
        return stats

    @property
    def rtt_source(self) -> RttSource | None:
        """Which send stamp the RTTs used: ``kernel`` when the kernel stamped every
        received reply's probe as it left, ``user`` when any RTT started from the
        user-space stamp (see transport/txstamps.py); None without replies."""
        if not self.received:
            return None
        return "kernel" if self.kernel_stamped == self.received else "user"

    @property
    def min_rtt_s(self) -> float | None:
        return self.min_s if self.received else None

    @property
    def max_rtt_s(self) -> float | None:
        return self.max_s if self.received else None

    @property
    def avg_rtt_s(self) -> float | None:
        return self.total_s / self.received if self.received else None

    @property
    def mdev_s(self) -> float | None:
        """iputils' mdev: the standard deviation sqrt(E[x²] - E[x]²)."""
        if not self.received:
            return None
        mean = self.total_s / self.received
        mean_sq = self.total_sq_s2 / self.received
        return math.sqrt(max(0.0, mean_sq - mean * mean))

    @property
    def jitter_s(self) -> float | None:
        """Mean absolute difference between consecutive RTTs (RFC 3550 style, unsmoothed)."""
        if self.received < 2:
            return None
        return self.jitter_total_s / (self.received - 1)


@dataclass(frozen=True, slots=True)
class PingResult:
    """Everything one host's ping produced.

    ``stats`` covers every reply and error; ``replies`` and ``errors`` are the records
    kept (PingOptions.keep_records: all of a ping with a count, none of an endless
    one, unless asked), so ``rtts`` may be fewer than ``received``. Made without
    ``stats``, the statistics are computed from ``replies`` and ``errors``.
    """

    address: str
    transmitted: int
    replies: tuple[PingReply, ...]
    errors: tuple[PingError, ...]
    elapsed_s: float
    payload_size: int
    stats: PingStats = None  # type: ignore[assignment]  # None: from the records

    def __post_init__(self) -> None:
        if self.stats is None:
            object.__setattr__(self, "stats", PingStats.of(self.replies, len(self.errors)))

    @property
    def received(self) -> int:
        return self.stats.received

    @property
    def duplicates(self) -> int:
        return self.stats.duplicates

    @property
    def error_count(self) -> int:
        return self.stats.errors

    @property
    def replies_omitted(self) -> int:
        """Replies (duplicates included) the result counts but keeps no record of."""
        return self.stats.received + self.stats.duplicates - len(self.replies)

    @property
    def errors_omitted(self) -> int:
        return self.stats.errors - len(self.errors)

    @property
    def rtts(self) -> tuple[float, ...]:
        """RTTs in seconds of the first reply to each probe, in arrival order (of the
        replies kept: see ``replies_omitted``)."""
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
        return self.stats.min_rtt_s

    @property
    def max_rtt_s(self) -> float | None:
        return self.stats.max_rtt_s

    @property
    def avg_rtt_s(self) -> float | None:
        return self.stats.avg_rtt_s

    @property
    def mdev_s(self) -> float | None:
        """iputils' mdev: the standard deviation sqrt(E[x²] - E[x]²)."""
        return self.stats.mdev_s

    @property
    def jitter_s(self) -> float | None:
        """Mean absolute difference between consecutive RTTs (RFC 3550 style, unsmoothed)."""
        return self.stats.jitter_s

    @property
    def rtt_source(self) -> RttSource | None:
        """``kernel`` or ``user``: which send stamp the RTTs used (PingStats)."""
        return self.stats.rtt_source
